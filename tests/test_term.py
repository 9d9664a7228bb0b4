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
