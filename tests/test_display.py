import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devagent.display import (CLOSE, OPEN, Lookalike, has_hidden_characters, lookalikes,
                              render_exact, unrender)

# An independent, deliberately conservative notion of "safe to print": it does
# not reuse anything from the module under test.
_INVISIBLE = set(range(0x200B, 0x2010)) | set(range(0x202A, 0x202F)) | set(range(0x2060, 0x2070)) \
    | set(range(0xFE00, 0xFE10)) | set(range(0xE0000, 0xE1000)) \
    | {0x061C, 0x00AD, 0x180E, 0xFEFF, 0x034F, 0x3164, 0xFFA0, 0x115F, 0x1160}


def safe_char(ch: str) -> bool:
    if ch in ("\n", " "):
        return True
    cat = unicodedata.category(ch)
    return cat[0] not in "CZ" and ord(ch) not in _INVISIBLE


def assert_terminal_safe(out: str) -> None:
    bad = [hex(ord(c)) for c in out if not safe_char(c)]
    assert not bad, bad
    # Delimiters only occur as balanced, non-nested token boundaries.
    depth = 0
    for c in out:
        if c == OPEN:
            assert depth == 0
            depth = 1
        elif c == CLOSE:
            assert depth == 1
            depth = 0
    assert depth == 0


def assert_subsequence(needle: str, hay: str) -> None:
    it = iter(hay)
    assert all(c in it for c in needle)


any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF)
nasty_fragments = st.sampled_from([
    "\x1b[2K", "\r", "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "\x1b]0;title\x07", "\x9b31m", "\u202e", "\u2066", "\u200b", "\ufeff", "\x00",
    "\x7f", "\t", "\u2028", "\u00a0", OPEN, CLOSE, f"{OPEN}U+001B ESC{CLOSE}",
    f"{OPEN}U+0041 LATIN CAPITAL LETTER A{CLOSE}", "U+", "\ud800", "\udfff",
    "\U000e0041", "\ufe0f", "а", "\n", "rm -rf /", "😀",
])
mixed_text = st.lists(st.one_of(nasty_fragments, st.text(alphabet=any_char, max_size=5)),
                      max_size=20).map("".join)
all_text = st.one_of(st.text(alphabet=any_char), mixed_text)


@settings(max_examples=500)
@given(all_text)
def test_output_is_terminal_safe(s):
    assert_terminal_safe(render_exact(s))


@settings(max_examples=500)
@given(all_text)
def test_round_trip(s):
    assert unrender(render_exact(s)) == s


@settings(max_examples=300)
@given(all_text)
def test_nothing_dropped(s):
    out = render_exact(s)
    assert len(out) >= len(s)
    visible = "".join(c for c in s if safe_char(c) and c not in (OPEN, CLOSE))
    assert_subsequence(visible, out)
    assert has_hidden_characters(s) == (out != s)


@settings(max_examples=300)
@given(all_text)
def test_lookalikes_cover_printed_non_ascii(s):
    found = lookalikes(s)
    assert all(x.char == s[x.index] and x.codepoint == f"U+{ord(x.char):04X}" for x in found)
    # Reported exactly when the character is non-ASCII and printed as itself.
    printed = [i for i, c in enumerate(s) if ord(c) > 0x7F and render_exact(c) == c]
    assert [x.index for x in found] == printed
    assert all(safe_char(s[i]) for i in printed)


def test_escape_and_carriage_return_are_visible():
    out = render_exact("echo hi\x1b[2K\rrm -rf /")
    assert out == "echo hi⟪U+001B ESC⟫[2K⟪U+000D CR⟫rm -rf /"
    assert has_hidden_characters("echo hi\x1b[2K\rrm -rf /")


def test_osc8_hyperlink_is_spelled_out():
    s = "curl \x1b]8;;https://evil.example/\x1b\\https://good.example/\x1b]8;;\x1b\\"
    out = render_exact(s)
    assert "\x1b" not in out
    assert "⟪U+001B ESC⟫]8;;https://evil.example/⟪U+001B ESC⟫\\" in out
    assert unrender(out) == s


def test_c1_csi_and_bidi_override():
    assert render_exact("ls\u202e") == "ls⟪U+202E RIGHT-TO-LEFT OVERRIDE⟫"
    assert render_exact("\x9b2J") == "⟪U+009B CSI⟫2J"
    assert render_exact("a\u2067b") == "a⟪U+2067 RIGHT-TO-LEFT ISOLATE⟫b"


def test_whitespace_tab_and_newline():
    assert render_exact("a\tb\nc d\u00a0e") == "a⟪U+0009 HT⟫b\nc d⟪U+00A0 NO-BREAK SPACE⟫e"


def test_surrogate_private_unassigned_and_tags():
    assert render_exact("\ud800") == "⟪U+D800 SURROGATE⟫"
    assert render_exact("\ue000") == "⟪U+E000 PRIVATE USE⟫"
    assert render_exact("\U0010ffff") == "⟪U+10FFFF UNASSIGNED⟫"
    assert render_exact("\U000e0041") == "⟪U+E0041 TAG LATIN CAPITAL LETTER A⟫"


def test_literal_delimiters_and_fake_tokens_are_escaped():
    fake = "⟪U+001B ESC⟫"
    out = render_exact(fake)
    assert out.startswith("⟪U+27EA ")
    assert unrender(out) == fake
    assert render_exact(fake) != render_exact("\x1b")


def test_unrender_rejects_text_render_exact_cannot_produce():
    for bad in ["⟪U+0041 LATIN CAPITAL LETTER A⟫", "⟪U+001B⟫", "⟪U+001B ESC", "a⟫",
                "⟪U+110000 X⟫", "\x1b", "⟪u+001b ESC⟫", "⟪U+001B BEL⟫"]:
        with pytest.raises(ValueError):
            unrender(bad)


def test_cyrillic_lookalike_is_reported():
    found = lookalikes("cаt /etc/passwd")
    assert found == [Lookalike(1, "а", "U+0430", "CYRILLIC SMALL LETTER A")]
    assert render_exact("cаt /etc/passwd") == "cаt /etc/passwd"
    assert not has_hidden_characters("cаt /etc/passwd")
    assert lookalikes("ls\u202e") == []  # escaped characters are not lookalikes


def test_large_input_round_trips():
    s = ("SELECT 1;\x1b[31m\u202eа😀\t\n" * 7000)[:100_000]
    out = render_exact(s)
    assert unrender(out) == s
    assert_terminal_safe(out)
