"""The screen off a terminal (a pipe, a file): what it prints."""

from __future__ import annotations

import io

from hypothesis import example, given
from hypothesis import strategies as st
from rich.console import Console

from devagent.term import UNWRAPPED_WIDTH, Screen, shown, shown_lines

STYLES = st.sampled_from(["", "dim", "bold", "red", "bold red on white"])
PIECE = st.tuples(st.text(), STYLES)


def piped() -> tuple[Screen, io.StringIO]:
    """A screen as `Screen()` makes it when stdout is a pipe (no colour, lines kept whole)."""
    out = io.StringIO()
    console = Console(file=out, width=UNWRAPPED_WIDTH, color_system=None, highlight=False, markup=False,
                      emoji=False, force_terminal=False)
    screen = Screen(console=console)
    screen.wraps = False
    return screen, out


def through_rich(items: list) -> str:
    """What rich itself renders for the same items on the same screen."""
    from devagent.term import _as_themselves

    screen, out = piped()
    screen.console.print(*_as_themselves(items), soft_wrap=True, highlight=False, markup=False, emoji=False)
    return out.getvalue()


@given(st.lists(st.lists(PIECE, min_size=1, max_size=4), min_size=1, max_size=5), st.booleans())
@example([[("a\tb  ", "dim"), ("", "")], [("\x1b[2J日本語\u0301 \u202e", "bold")]], True)
@example([[("trailing   ", ""), ("\r\n", "red")]], False)
def test_lines_off_a_terminal_are_exactly_what_rich_prints(lines, several) -> None:
    items = [shown(*parts, limit=60) for parts in lines]
    if several:
        items.append(shown_lines([p for parts in lines for p in parts]))
    screen, out = piped()
    screen.console.print = None  # written without rich's rendering: calling it would fail
    screen.print(*items)
    assert out.getvalue() == through_rich(items)
    assert out.getvalue().count("\n") == sum(item.plain.count("\n") + 1 for item in items)


def test_a_screen_that_records_or_colours_goes_through_rich() -> None:
    screen, out = piped()
    screen.console.record = True
    screen.print(shown(("recorded", "bold")))
    assert screen.console.export_text() == "recorded\n" == out.getvalue()
    coloured = io.StringIO()
    screen = Screen(console=Console(file=coloured, width=UNWRAPPED_WIDTH, color_system="standard",
                                    force_terminal=True))
    screen.wraps = False
    screen.print(shown(("bold", "bold")))
    assert coloured.getvalue() == "\x1b[1mbold\x1b[0m\n"


@given(st.lists(st.tuples(st.text(), STYLES, st.one_of(st.none(), st.integers(0, 40))), max_size=6))
@example([("\x1b]8;;x\x07a\nb", "bold", 3), ("日本語", "", None), ("", "red", None)])
def test_a_line_of_parts_with_limits_of_their_own_is_each_part_shown_alone(parts) -> None:
    """shown(*parts) in one go (as `log` builds its lines) gives the text and styles of the parts
    shown one by one and appended, and, without limits, what rich's own append makes."""
    from rich.text import Text

    from devagent.display import render_inline

    at_once = shown(*[(text, style, limit) if limit is not None else (text, style) for text, style, limit in parts])
    one_by_one = shown()
    for text, style, limit in parts:
        one_by_one.append_text(shown((text, style), limit=limit))
    assert (at_once.plain, at_once.spans) == (one_by_one.plain, one_by_one.spans)

    unlimited = shown(*[(text, style) for text, style, _ in parts])
    by_rich = Text()
    for text, style, _ in parts:
        by_rich.append(render_inline(text), style or None)
    assert (unlimited.plain, unlimited.spans) == (by_rich.plain, by_rich.spans)
