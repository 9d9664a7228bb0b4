"""Render commands and SQL for the human approval screen.

The approver must see exactly what will run.  Text proposed by a model can
contain terminal escape sequences (clear line, move cursor, OSC 8 links),
carriage returns, bidi overrides or invisible characters that make the screen
show something other than the bytes that will execute.  `render_exact` turns
every such character into a visible token, and `unrender` proves nothing was
lost: it is the exact inverse.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Token delimiters.  They are escaped themselves when they occur in the input,
# so in rendered text they only ever appear as token boundaries.
OPEN, CLOSE = "\u27ea", "\u27eb"  # ⟪ ⟫

_C0 = ("NUL SOH STX ETX EOT ENQ ACK BEL BS HT LF VT FF CR SO SI DLE DC1 DC2 "
       "DC3 DC4 NAK SYN ETB CAN EM SUB ESC FS GS RS US").split()
_C1 = ("PAD HOP BPH NBH IND NEL SSA ESA HTS HTJ VTS PLD PLU RI SS2 SS3 DCS PU1 "
       "PU2 STS CCH MW SPA EPA SOS SGCI SCI CSI ST OSC PM APC").split()
_CATEGORY_NAMES = {"Cs": "SURROGATE", "Co": "PRIVATE USE", "Cn": "UNASSIGNED"}

# Controls, format characters (bidi, zero-width, soft hyphen, tags), surrogates,
# private use, unassigned, and every separator except the plain space.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})

# Characters outside those categories that still render as nothing (or as
# blank) on common terminals, or silently change the preceding character.
_INVISIBLE_RANGES = (
    (0x034F, 0x034F),    # COMBINING GRAPHEME JOINER
    (0x115F, 0x1160),    # HANGUL CHOSEONG/JUNGSEONG FILLER
    (0x17B4, 0x17B5),    # KHMER VOWEL INHERENT AQ/AA
    (0x180B, 0x180F),    # MONGOLIAN FREE VARIATION SELECTORS (+ VS4)
    (0x2800, 0x2800),    # BRAILLE PATTERN BLANK
    (0x3164, 0x3164),    # HANGUL FILLER
    (0xFE00, 0xFE0F),    # VARIATION SELECTORS
    (0xFFA0, 0xFFA0),    # HALFWIDTH HANGUL FILLER
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement, reserved
)


@lru_cache(maxsize=8192)
def _hidden(ch: str) -> bool:
    """True if `ch` must be shown as a token instead of printed as-is."""
    if ch == "\n" or ch == " ":
        return False
    if ch == OPEN or ch == CLOSE:
        return True
    if unicodedata.category(ch) in _HIDDEN_CATEGORIES:
        return True
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _INVISIBLE_RANGES)


def _name(ch: str) -> str:
    cp = ord(ch)
    if cp < 0x20:
        return _C0[cp]
    if cp == 0x7F:
        return "DEL"
    if 0x80 <= cp <= 0x9F:
        return _C1[cp - 0x80]
    return unicodedata.name(ch, "") or _CATEGORY_NAMES.get(
        unicodedata.category(ch), "UNNAMED")


@lru_cache(maxsize=8192)
def _token(ch: str) -> str:
    return f"{OPEN}U+{ord(ch):04X} {_name(ch)}{CLOSE}"


def render_exact(text: str) -> str:
    """Return `text` with every character a terminal could act on, hide or
    reorder replaced by a visible `⟪U+XXXX NAME⟫` token.  "\\n" stays a real
    newline and " " stays a space; nothing is dropped or truncated."""
    if text.isascii() and text.replace("\n", "").isprintable():
        return text  # printable ASCII and newlines, most text: nothing to replace
    return "".join([_token(ch) if _hidden(ch) else ch for ch in text])


def unrender(rendered: str) -> str:
    """Exact inverse of `render_exact`.  Raises ValueError for text that
    `render_exact` cannot have produced, so a mangled rendering is never
    silently decoded into something else."""
    out: list[str] = []
    i, n = 0, len(rendered)
    while i < n:
        j = rendered.find(OPEN, i)
        end = n if j < 0 else j
        plain = rendered[i:end]
        if any(_hidden(ch) for ch in plain):
            raise ValueError(f"unescaped hidden character near offset {i}")
        out.append(plain)
        if j < 0:
            break
        k = rendered.find(CLOSE, j)
        if k < 0:
            raise ValueError(f"unterminated token at offset {j}")
        body = rendered[j + 1:k]
        code = body.split(" ", 1)[0]
        digits = code[2:]
        if not (code.startswith("U+") and 4 <= len(digits) <= 6
                and all(c in "0123456789ABCDEF" for c in digits)
                and int(digits, 16) <= 0x10FFFF):
            raise ValueError(f"malformed token at offset {j}")
        ch = chr(int(digits, 16))
        # Only the exact token render_exact emits is accepted.
        if not _hidden(ch) or _token(ch) != rendered[j:k + 1]:
            raise ValueError(f"malformed token at offset {j}")
        out.append(ch)
        i = k + 1
    return "".join(out)


def has_hidden_characters(text: str) -> bool:
    """True when render_exact would escape at least one character."""
    return any(_hidden(ch) for ch in text)


@dataclass(frozen=True)
class Lookalike:
    index: int       # position in the original text
    char: str
    codepoint: str   # "U+0430"
    name: str        # "CYRILLIC SMALL LETTER A"


def lookalikes(text: str) -> list[Lookalike]:
    """Every non-ASCII character that render_exact prints as-is.  Such
    characters may impersonate ASCII (Cyrillic "а" in `cаt`), so the screen
    lists them for the approver."""
    return [Lookalike(i, ch, f"U+{ord(ch):04X}", _name(ch))
            for i, ch in enumerate(text) if ord(ch) > 0x7F and not _hidden(ch)]


LF_TOKEN = _token("\n")


def render_inline(text: str) -> str:
    """`render_exact` for a place that holds one line (a progress line, a table cell, a file
    name): a newline becomes a visible token too, so nothing can start a line of its own."""
    return render_exact(text).replace("\n", LF_TOKEN)


def render_head(text: str, limit: int) -> tuple[str, int]:
    """The rendering of the longest head of `text` whose rendering has at most `limit`
    characters, and how many characters of `text` are left out. Linear in `limit`, whatever
    the length of `text`, so a huge or token-heavy payload costs no more than the screen shows."""
    head = text[:limit]
    rendered = render_exact(head)
    if len(rendered) <= limit:
        return rendered, len(text) - len(head)
    out: list[str] = []
    used = 0
    for i, ch in enumerate(head):
        piece = _token(ch) if _hidden(ch) else ch
        if used + len(piece) > limit:
            return "".join(out), len(text) - i
        out.append(piece)
        used += len(piece)
    return "".join(out), len(text) - len(head)  # not reached: rendered was longer than limit
