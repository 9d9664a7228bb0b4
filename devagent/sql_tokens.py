"""Split SQL into statements and read a statement's tokens, in linear time.

``scan`` cuts a script where the database's own tools do: SQLite where sqlite3_complete()
says a statement ends (trigger bodies run to a bare "END;"), PostgreSQL where psql does
(never inside parentheses, nor inside the BEGIN … END of a CREATE FUNCTION/PROCEDURE).
``tokenize`` and ``Cursor`` read one statement for devagent.sql_analysis.
"""
from __future__ import annotations

import re

# Only what the database engines treat as whitespace; str.isspace() also accepts
# characters such as U+001C that SQLite would reject, and those must not vanish.
WS = " \t\n\r\f\v"
TRIGGER_HEADS = (["CREATE", "TRIGGER"], ["CREATE", "TEMP", "TRIGGER"], ["CREATE", "TEMPORARY", "TRIGGER"])
ROUTINE_HEADS = (["CREATE", "FUNCTION"], ["CREATE", "PROCEDURE"],
                 ["CREATE", "OR", "REPLACE", "FUNCTION"], ["CREATE", "OR", "REPLACE", "PROCEDURE"])

# One step of the splitter: a run of characters that cannot end or open anything is taken whole,
# so the cost is per token, never per byte of a long run (e.g. a file of NUL bytes).
SCAN_STEP = re.compile(r"""[ \t\n\r\f\v]*(?:
    (?P<ws>\Z)
  | (?P<line>--[^\n]*\n?)
  | (?P<block>/\*)
  | (?P<word>[^\W\d][\w$]*)
  | (?P<semi>;)
  | (?P<quote>['"`\[])
  | (?P<dollar>\$(?:[^\W\d]\w*)?\$)
  | (?P<parens>[()]+)
  | (?P<other>[^\w \t\n\r\f\v'"`\[;()$/-]+|\d+|.)
)""", re.VERBOSE | re.DOTALL)


def scan(sql: str, dialect: str) -> list[tuple[int, int, list[str]]]:
    """Return (start, end, tokens) for each piece between statement-ending ';'.

    tokens holds the upper-cased top-level words, with "" standing for any run of other
    tokens (punctuation, literals), so "(BEGIN" does not look like it starts with BEGIN.

    SQLite cuts where sqlite3_complete() does (trigger bodies end at a bare "END;").
    PostgreSQL cuts where psql does: never inside parentheses (CREATE RULE … DO (a; b)), nor
    inside the BEGIN … END of a CREATE FUNCTION/PROCEDURE (SQL-standard bodies, BEGIN ATOMIC).

    Pieces made only of whitespace and comments are omitted. Unterminated quotes or
    comments run to the end of the text, so the remainder becomes one (unparseable) piece.
    """
    pg = dialect == "postgres"
    pieces: list[tuple[int, int, list[str]]] = []
    n, i, start = len(sql), 0, 0
    words: list[str] = []
    content, body = False, 0  # body: index in words where the current trigger-body statement starts
    parens = blocks = 0  # PostgreSQL: parenthesis depth, BEGIN/CASE … END depth in a routine body
    step = SCAN_STEP.match
    while i < n:
        m = step(sql, i)
        kind, i, j = m.lastgroup, m.start(m.lastgroup), m.end()
        if kind in ("ws", "line"):
            i = j
            continue
        if kind == "block":
            i = block_comment_end(sql, i, nested=pg)
            continue
        if kind == "semi":
            # SQLite trigger bodies contain ';' and only a bare "END;" closes them
            # (the same rule as sqlite3_complete, which the sqlite3 shell splits by).
            trigger = not pg and any(words[:len(head)] == head for head in TRIGGER_HEADS)
            if trigger and words[body:] != ["END"]:
                body = len(words)
            elif pg and (parens or blocks):
                words.append("")
            else:
                if content:
                    pieces.append((start, i, words))
                start, words, content, body, parens, blocks = j, [], False, 0, 0, 0
            i = j
            continue
        content = True
        if kind == "word":
            word = m.group("word").upper()
            words.append(word)
            if pg and not parens and word in ("BEGIN", "CASE", "END") and any(
                    words[:len(head)] == head for head in ROUTINE_HEADS):
                if word == "BEGIN" or (word == "CASE" and blocks):
                    blocks += 1
                elif word == "END" and blocks:
                    blocks -= 1
            i = j
            continue
        if len(words) == body or words[-1] != "":  # collapse runs, but never across a trigger-body ';'
            words.append("")
        c = sql[i]
        if kind == "quote" and (c in "'\"" or not pg):
            # PostgreSQL E'...' strings allow backslash escapes, including \'.
            backslash = pg and c == "'" and sql[i - 1] in "eE" and words[-2:] == ["E", ""]
            end = quoted_end(sql, i, "]" if c == "[" else c, backslash)
            i = n if end < 0 else end
        elif kind == "dollar" and pg:
            tag = m.group("dollar")
            close = sql.find(tag, j)
            i = n if close < 0 else close + len(tag)
        elif kind == "parens" and pg:
            run = m.group("parens")
            if ")" not in run:
                parens += len(run)
            else:
                for ch in run:
                    parens = parens + 1 if ch == "(" else max(parens - 1, 0)
            i = j
        elif kind in ("dollar", "quote", "parens"):
            i += 1 if kind != "parens" else j - i
        else:
            i = j
    if content:
        pieces.append((start, n, words))
    return pieces


def quoted_end(sql: str, i: int, close: str, backslash: bool) -> int:
    """Index after the closing quote of the quoted text at i, or -1 if it is unterminated."""
    j = i + 1
    while True:
        k = sql.find(close, j)
        if k < 0:
            return -1
        if backslash:
            # the quote is escaped if an odd number of backslashes precede it
            slashes = k - 1
            while slashes >= j and sql[slashes] == "\\":
                slashes -= 1
            if (k - 1 - slashes) % 2:
                j = k + 1
                continue
        if close != "]" and sql.startswith(close * 2, k):  # doubled quote is an escape
            j = k + 2
            continue
        return k + 1


def block_comment_end(sql: str, i: int, nested: bool, unterminated: int | None = None) -> int:
    """Index after the block comment opening at i; unterminated comments run to the end."""
    depth, j = 1, i + 2
    close = sql.find("*/", j)
    opening = sql.find("/*", j) if nested else -1
    while depth:
        if close < 0:
            return len(sql) if unterminated is None else unterminated
        if 0 <= opening < close:  # PostgreSQL nests block comments
            depth, j = depth + 1, opening + 2
        else:
            depth, j = depth - 1, close + 2
        # each search starts where the last one's result is used up: linear overall
        if close < j:
            close = sql.find("*/", j)
        if 0 <= opening < j:
            opening = sql.find("/*", j)
    return j


class Tok:
    __slots__ = ("kind", "up", "start", "end", "depth", "mate")

    def __init__(self, kind: str, up: str, start: int, end: int, depth: int) -> None:
        self.kind = kind  # w: word, q: quoted identifier, s: string, n: number, p: punctuation, $: dollar body
        self.up = up  # upper-cased word, or the punctuation; "" for literals and quoted names
        self.start, self.end, self.depth = start, end, depth
        self.mate = -1  # for parentheses: the index of the matching one

    def __repr__(self) -> str:  # for debugging only
        return f"{self.kind}:{self.up or self.start}"


class Unparsed(Exception):
    """The statement is not valid SQL as devagent reads it."""


TOKEN_STEP = re.compile(r"""[ \t\n\r\f\v]*(?:
    (?P<ws>\Z|--[^\n]*)
  | (?P<block>/\*)
  | (?P<w>(?:[^\W\d]|[^\x00-\x7f])(?:[\w$]|[^\x00-\x7f])*)
  | (?P<n>\d[\w.]*(?:(?<=[eE])[+-]\d+)?|\.\d[\w.]*)
  | (?P<quote>['"`\[])
  | (?P<dollar>\$(?:[^\W\d]\w*)?\$)
  | (?P<bad>[\x00-\x1f\x7f])
  | (?P<open>\()
  | (?P<close>\))
  | (?P<p>::|<>|!=|>=|<=|\|\||=>|:=|.)
)""", re.VERBOSE | re.DOTALL)


MAX_DEPTH = 200


def tokenize(text: str, dialect: str) -> list[Tok]:
    pg = dialect == "postgres"
    toks: list[Tok] = []
    opened: list[int] = []
    n, i = len(text), 0
    step = TOKEN_STEP.match
    while i < n:
        m = step(text, i)
        kind, i, j = m.lastgroup, m.start(m.lastgroup), m.end()
        if kind == "ws":
            i = j
            continue
        if kind == "block":
            i = block_comment_end(text, i, nested=pg, unterminated=-1)
            if i < 0:
                raise Unparsed("unterminated comment")
            continue
        depth = len(opened)
        if kind == "w":
            toks.append(Tok("w", m.group("w").upper(), i, j, depth))
        elif kind == "n":
            toks.append(Tok("n", "", i, j, depth))
        elif kind == "quote" and (m.group("quote") in "'\"" or not pg):
            c = m.group("quote")
            backslash = pg and c == "'" and bool(toks) and toks[-1].end == i and toks[-1].up == "E"
            j = quoted_end(text, i, "]" if c == "[" else c, backslash)
            if j < 0:
                raise Unparsed("unterminated quoted text")
            toks.append(Tok("s" if c == "'" else "q", "", i, j, depth))
        elif kind == "dollar" and pg:
            tag = m.group("dollar")
            close = text.find(tag, j)
            if close < 0:
                raise Unparsed("unterminated dollar-quoted text")
            j = close + len(tag)
            toks.append(Tok("$", "", i, j, depth))
        elif kind == "bad":
            raise Unparsed(f"control character U+{ord(m.group('bad')):04X} outside quotes")
        elif kind == "open":
            if depth >= MAX_DEPTH:  # no migration nests this deep; stop before the cost grows
                raise Unparsed(f"parentheses nested deeper than {MAX_DEPTH}")
            opened.append(len(toks))
            toks.append(Tok("p", "(", i, j, depth))
        elif kind == "close":
            if not opened:
                raise Unparsed("unbalanced ')'")
            mate = opened.pop()
            toks.append(Tok("p", ")", i, j, len(opened)))
            toks[mate].mate, toks[-1].mate = len(toks) - 1, mate
        else:
            j = i + 1 if kind in ("quote", "dollar") else j
            toks.append(Tok("p", text[i:j], i, j, depth))
        i = j
    if opened:
        raise Unparsed("unbalanced '('")
    return toks


class Name:
    __slots__ = ("show", "key")

    def __init__(self, show: str, key: str) -> None:
        self.show, self.key = show, key  # as written (quotes removed); as the engine compares it


class Cursor:
    """Reads the top-level tokens of one statement (or of a parenthesised part of it)."""

    def __init__(self, text: str, toks: list[Tok], dialect: str, ts: list[Tok] | None = None) -> None:
        self.text, self.toks, self.dialect = text, toks, dialect
        self.ts = [t for t in toks if t.depth == 0] if ts is None else ts
        self.i = 0

    def raw(self, t: Tok) -> str:
        return self.text[t.start:t.end]

    def up(self, k: int = 0) -> str:
        """The keyword or punctuation k tokens ahead ("" for names in quotes, literals, the end)."""
        j = self.i + k
        return self.ts[j].up if j < len(self.ts) else ""

    def at(self, *words: str) -> bool:
        return all(self.up(k) == w for k, w in enumerate(words))

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.i += len(words)
            return True
        return False

    def skip_any(self, *words: str) -> None:
        while self.i < len(self.ts) and self.ts[self.i].kind == "w" and self.ts[self.i].up in words:
            self.i += 1

    def done(self) -> bool:
        return self.i >= len(self.ts)

    def words(self) -> list[str]:
        return [t.up for t in self.ts[self.i:] if t.kind == "w"]

    def name(self, what: str = "name") -> Name:
        parts: list[tuple[str, str]] = []
        while True:
            if self.i >= len(self.ts) or self.ts[self.i].kind not in "wq":
                raise Unparsed(f"expected a {what}")
            t = self.ts[self.i]
            raw = self.raw(t)
            if t.kind == "q":
                inner = raw[1:-1].replace(raw[0] * 2, raw[0]) if raw[0] != "[" else raw[1:-1]
                parts.append((inner, inner.lower() if self.dialect == "sqlite" else inner))
            else:
                parts.append((raw, raw.lower()))
            self.i += 1
            if self.up() == "." and self.i + 1 < len(self.ts) and self.ts[self.i + 1].kind in "wq":
                self.i += 1
                continue
            return Name(".".join(p for p, _ in parts), ".".join(k for _, k in parts))

    def inner(self, t: Tok) -> tuple[str, int]:
        """Text inside parenthesis token t, and its offset in self.text."""
        close = self.toks[t.mate]
        return self.text[t.end:close.start], t.end

    def rest(self) -> str:
        return self.text[self.ts[self.i].start:] if not self.done() else ""

    def split(self, sep: str = ",") -> list["Cursor"]:
        parts, cur = [], []
        for t in self.ts[self.i:]:
            if t.kind == "p" and t.up == sep:
                parts.append(cur)
                cur = []
            else:
                cur.append(t)
        parts.append(cur)
        return [Cursor(self.text, self.toks, self.dialect, p) for p in parts]
