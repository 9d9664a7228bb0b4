"""The one way devagent writes to the terminal and reads keys from it.

Text that came from the model, the workspace or the database can hold escape sequences that
rewrite the screen, set the title, write the clipboard or clear the scrollback, and newlines or
carriage returns that start a line of its own (a forged line of an approval box). So nothing is
printed as a plain string: every piece of text is a `Shown`, and the only ways to make one are
`shown()`, which escapes its parts as one line (a newline or CR in them becomes a visible token),
and `shown_lines()`, which joins such lines with real line breaks: a line break reaches the screen
only where devagent's own code asked for one. `Shown` refuses to be built or changed from raw
text. `Screen.print` accepts only `Shown` and the containers (panels, tables, groups) and
renderables built from them, and refuses a `str` or a plain rich `Text` at once, so a raw print of
untrusted text cannot be written by mistake. (rich adds its own colour codes; nothing else reaches
the terminal.)

Answers are read with `Screen.key` (one keypress, no Enter) and `Screen.ask` (one line); both
first throw away whatever was typed before the question was on the screen.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.containers import Lines
from rich.text import Span, Text

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

from devagent.display import LF_TOKEN, render_exact, render_head, render_inline

# Output on a pipe or file is not wrapped: commands and results stay on one line, copy-pasteable.
UNWRAPPED_WIDTH = 100_000
CONTINUATION = "↪"  # starts every wrapped piece of a line


# Only this module holds the key that makes a `Shown`: elsewhere, `Shown("...")` is refused.
_MINT = object()


class Shown(Text):
    """Escaped text, safe to print. Made only by `shown()` and `shown_lines()`; appending a `str`
    escapes it as one line; nothing else can put raw text in it."""

    def __init__(self, *, style: Any = "", _mint: object = None, **options: Any) -> None:
        if _mint is not _MINT:
            raise TypeError("shown text is made only by devagent.term.shown() or shown_lines()")
        super().__init__("", style, **options)

    @property  # type: ignore[override]
    def plain(self) -> str:
        return Text.plain.fget(self)  # type: ignore[attr-defined]

    @plain.setter
    def plain(self, new_text: str) -> None:
        if not getattr(self, "_editing", False):
            raise TypeError("the text of shown text cannot be replaced")
        Text.plain.fset(self, new_text)  # type: ignore[attr-defined]

    def truncate(self, max_width: int, *, overflow: Any = None, pad: bool = False) -> None:
        """Cutting already escaped text cannot bring raw text in; rich does it by replacing the
        text, which is allowed for this call only."""
        self._editing = True
        try:
            Text.truncate(self, max_width, overflow=overflow, pad=pad)
        finally:
            self._editing = False

    def append(self, text: Any, style: Any = None) -> Shown:  # type: ignore[override]
        if isinstance(text, str):
            text = render_inline(text)
        elif not isinstance(text, Shown):
            raise TypeError(f"only escaped text can be appended to shown text, not {type(text).__name__}")
        super().append(text, style)
        return self

    def append_text(self, text: Text) -> Shown:  # type: ignore[override]
        if not isinstance(text, Shown):
            raise TypeError("only escaped text can be appended to shown text")
        super().append_text(text)
        return self

    def append_tokens(self, tokens: Any) -> Shown:  # type: ignore[override]
        raise TypeError("only escaped text can be appended to shown text")

    def _append_escaped(self, text: str, style: Any = None) -> None:
        """What `Text.append` does with a string, less its pass that strips the control
        characters escaped text no longer holds (a log of ~600 lines makes ~4,000 of these)."""
        if text:
            offset = self._length
            self._text.append(text)
            if style:
                self._spans.append(Span(offset, offset + len(text), style))
            self._length = offset + len(text)

    def wrap_unmarked(self, console: Console, width: int) -> Lines:
        """Rows without ↪, for a renderable that marks its wrapped rows its own way (an indent)."""
        return Text.wrap(self, console, width)

    def wrap(self, console: Console, width: int, **options: Any) -> Lines:  # type: ignore[override]
        """Lines cut to `width`, a wrapped piece marked ↪: a row that is not the start of one of the
        text's own lines never looks like one (a long name cannot put a forged line of a box, or
        of the keys, at the start of a row)."""
        no_wrap = options.get("no_wrap")
        no_wrap = self.no_wrap if no_wrap is None else no_wrap
        rows = Lines()
        for line in self.split(allow_blank=True):
            if no_wrap or width < 8 or cell_len(line.plain) <= width:
                rows.extend(Text.wrap(line, console, width, **options))
                continue
            for n, row in enumerate(Text.wrap(line, console, width - 2, **options)):
                if n:
                    mark = Text(CONTINUATION + " ", style="dim", end=row.end)
                    mark.append_text(row)
                    row = mark
                rows.append(row)
        return rows


Part = str | tuple[str, str] | tuple[str, str, int]  # text, style, and a limit of its own


def _blank(style: str = "") -> Shown:
    return Shown(style=style, end="\n", no_wrap=False, _mint=_MINT)


def shown(*parts: Part, style: str = "", inline: bool = True, limit: int | None = None) -> Shown:
    """One line of escaped text from `parts` (each a string, a (string, style) pair or a (string,
    style, limit) triple): a newline or carriage return in them is a visible token, never a new
    screen line (`shown_lines` is for text meant to take several lines).

    limit: show at most this many characters of each part (but those with a limit of their own),
    then say how much was left out.
    """
    if not inline:
        raise TypeError("shown() is one line; use shown_lines() for several")
    out = _blank(style)
    for part in parts:
        part_limit = limit
        if isinstance(part, str):
            text, part_style = part, ""
        elif len(part) == 3:
            text, part_style, part_limit = part  # type: ignore[misc]
        else:
            text, part_style = part  # type: ignore[misc]
        if part_limit is not None:
            head, left = render_head(text, part_limit)
            out._append_escaped(head.replace("\n", LF_TOKEN), part_style or None)
            if left:
                out._append_escaped(f"… ({left} more characters)", "dim")
            continue
        out._append_escaped(render_inline(text), part_style or None)
    return out


def shown_lines(lines: Iterable[Part | Shown], style: str = "", limit: int | None = None) -> Shown:
    """Several lines, each escaped as one line (as by `shown`), joined by real line breaks: the
    explicit way to print a message of several lines. Each item is one line: a newline or CR
    inside it stays a visible token (split text on "\n" first where its lines are meant as lines).

    limit: show at most about this many escaped characters in all, then say how much was left out.
    """
    pieces = list(lines)
    out = _blank(style)
    budget = limit
    for number, piece in enumerate(pieces):
        if budget is not None and budget <= 0:
            out._append_escaped(f"\n… ({len(pieces) - number} more lines not shown)", "dim")
            break
        if number:
            out._append_escaped("\n")
        line = piece if isinstance(piece, Shown) else shown(piece, limit=budget)
        out.append_text(line)
        if budget is not None:
            budget -= len(line.plain) + 1
    return out


class SafeRenderable:
    """Base of renderables whose every character of outside text is escaped when they are built."""


def _loaded(module: str, name: str) -> type | None:
    """A rich class if its module was imported, else None: nothing can be an instance of a class
    never loaded, so the commands that print neither panels nor tables do not import them."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name) if loaded is not None else None


def check_printable(item: Any) -> None:
    """Refuse anything that could carry text that was not escaped by `shown()`."""
    if isinstance(item, (Shown, SafeRenderable)):
        return
    if isinstance(item, str) or isinstance(item, Text):
        raise TypeError(f"refusing to print a {type(item).__name__}: build it with devagent.term.shown()")
    Panel, Table, Padding = (_loaded("rich.panel", "Panel"), _loaded("rich.table", "Table"),
                             _loaded("rich.padding", "Padding"))
    if Panel is not None and isinstance(item, Panel):
        for part in (item.renderable, item.title, item.subtitle):
            if part is not None:
                check_printable(part)
        return
    if Table is not None and isinstance(item, Table):
        for part in (item.title, item.caption):
            if part is not None:
                check_printable(part)
        for column in item.columns:
            for cell in [column.header, column.footer, *column._cells]:
                if cell != "":  # an empty cell shows nothing
                    check_printable(cell)
        return
    Group = _loaded("rich.console", "Group")
    if Group is not None and isinstance(item, Group):
        for part in item.renderables:
            check_printable(part)
        return
    if Padding is not None and isinstance(item, Padding):
        check_printable(item.renderable)
        return
    raise TypeError(f"refusing to print a {type(item).__name__}: not built from escaped text")


def _as_themselves(items: Iterable[RenderableType]) -> tuple[RenderableType, ...]:
    """rich joins text printed at the top level into one plain Text, which would wrap without the
    ↪ marks: each piece of shown text is rendered as itself."""
    from rich.console import Group

    return tuple(Group(item) if isinstance(item, Shown) else item for item in items)


def _colour_forced() -> bool:
    """rich takes a stream that is not a terminal for one when the environment says so."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    return compatible == "1" or (compatible != "0" and os.environ.get("FORCE_COLOR", "") != "")


class Screen:
    """A terminal (stdout, or stderr when stdout carries JSON) that prints only escaped text."""

    def __init__(self, stderr: bool = False, console: Console | None = None) -> None:
        # wraps: lines are wrapped (and panels widened) to the terminal's width; off a terminal a
        # line stays whole.
        self.wraps = True
        self._stderr = stderr
        if console is None:
            stream = sys.stderr if stderr else sys.stdout
            self.wraps = stream.isatty()
        # Off a terminal (a pipe, a file, CI) plain lines need no rich console: it is made (and
        # rich.console imported, a third of a quick command's start) when something needs it.
        self._plain = console is None and not self.wraps and not _colour_forced()
        self._console = console
        self._stdin = sys.stdin

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, highlight=False, markup=False, emoji=False,
                                    width=None if self.wraps else UNWRAPPED_WIDTH)
        return self._console

    @property
    def existing_console(self) -> Console | None:
        """The rich console, if one was made (or given)."""
        return self._console

    @property
    def is_terminal(self) -> bool:
        return False if self._plain else self.console.is_terminal

    @property
    def width(self) -> int:
        return UNWRAPPED_WIDTH if self._plain else self.console.width

    @property
    def height(self) -> int:
        return self.console.height

    def print(self, *items: RenderableType, end: str = "\n") -> None:
        for item in items:
            check_printable(item)
        if end == "\n" and self._plain_lines(items):
            return
        if end == "\n":
            items = _as_themselves(items)
        # soft_wrap off a terminal: a long line stays one line.
        self.console.print(*items, end=end, soft_wrap=not self.wraps, highlight=False, markup=False,
                           emoji=False)

    def _plain_lines(self, items: tuple[Any, ...]) -> bool:
        """Off a terminal, with no colour, shown text prints as its characters, one line each:
        written at once, without rich's rendering (hundreds of `log` lines took ~0.1 s in it).
        False (nothing written) where rich has more to do."""
        if not all(type(item) is Shown and item.end == "\n" for item in items):
            return False
        console = self._console
        if console is None:
            if not self._plain:
                return False
            out = sys.stderr if self._stderr else sys.stdout  # where rich's console would write
        else:
            if self.wraps or console.color_system is not None or console.record or console._buffer_index:
                return False
            out = console.file
        out.write("".join(item.plain + "\n" for item in items))
        out.flush()
        return True

    def stream(self, text: str) -> None:
        """A command's live output, escaped."""
        self.console.out(render_exact(text), end="", highlight=False)

    def page(self, items: Iterable[RenderableType], lines: int) -> None:
        """Print, through a pager when it would not fit on the screen."""
        items = list(items)
        for item in items:
            check_printable(item)
        if not self.is_terminal or lines < self.height - 2:
            self.print(*items)
            return
        with self.console.pager(styles=False):
            self.console.print(*_as_themselves(items), highlight=False, markup=False, emoji=False)

    # ---------------------------------------------------------------- input

    def _tty_fd(self) -> int | None:
        try:
            fd = self._stdin.fileno()
        except (AttributeError, ValueError, OSError):
            return None
        return fd if os.isatty(fd) else None

    def flush_input(self) -> None:
        """Throw away keys typed before the question was shown (typeahead never answers it)."""
        fd = self._tty_fd()
        if fd is not None:
            import termios

            termios.tcflush(fd, termios.TCIFLUSH)

    def ask(self, prompt: Shown) -> str:
        """One line of text, typed after the prompt appeared."""
        check_printable(prompt)
        self.flush_input()
        return self.console.input(prompt)

    def key(self, prompt: Shown, keys: str) -> str:
        """One keypress out of `keys`, without Enter; anything else (Enter included) is ignored.

        Off a terminal (tests drive the approver with scripted lines) a line's first character is
        the key."""
        check_printable(prompt)
        fd = self._tty_fd()
        if fd is None:
            while True:
                answer = self.console.input(prompt).strip().lower()
                if answer[:1] and answer[0] in keys:
                    return answer[0]
        self.console.print(prompt, end="")
        self.console.file.flush()
        key = _read_key(fd, keys)
        self.console.print(shown(key))
        return key


def _read_key(fd: int, keys: str) -> str:
    import select
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)  # one key at a time, no echo; Ctrl-C still interrupts
        termios.tcflush(fd, termios.TCIFLUSH)
        while True:
            byte = os.read(fd, 1)
            if byte in (b"", b"\x04"):  # end of input, Ctrl-D
                raise KeyboardInterrupt
            if byte == b"\x1b" or byte >= b"\x80":
                # An escape sequence (arrow keys, function keys) or a non-ASCII character: its
                # remaining bytes must not be read as keys (ESC [ A would be "a").
                while select.select([fd], [], [], 0.05)[0]:
                    os.read(fd, 64)
                continue
            key = byte.decode("ascii").lower()
            if key in keys:
                return key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class StatusLine:
    """One line on stderr that says what is going on and for how long ("thinking 8.2s",
    "running `make test` 9s"), with output streaming above it. Only on a terminal: nothing of it
    reaches a pipe, a CI log or --json output."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True, highlight=False, markup=False, emoji=False)
        self.status: Any = None
        self.what = ""
        self.since = 0.0
        # Tools run on worker threads (several calls of one model turn at once): one line, one lock.
        self.lock = threading.Lock()

    def __rich__(self) -> Shown:
        line = shown((self.what, "bold"), f" {time.monotonic() - self.since:.1f}s", inline=True, limit=100)
        line.no_wrap, line.overflow = True, "ellipsis"  # always one line: redrawn in place
        return line

    def show(self, what: str | None) -> None:
        if not self.console.is_terminal:
            return
        with self.lock:
            self._show(what)

    def _show(self, what: str | None) -> None:
        if what is None:
            if self.status is not None:
                self.status.stop()
                self.status = None
            return
        self.what, self.since = what, time.monotonic()
        if self.status is None:
            from rich.status import Status

            self.status = Status(self, console=self.console, spinner="dots", refresh_per_second=10)
            self.status.start()



def emit_json(data: Any) -> None:
    """JSON on stdout, every non-ASCII and control character as a \\u escape, so that it is safe
    to print to a terminal and reads back exactly."""
    text = json.dumps(data, indent=2, ensure_ascii=True).replace("\x7f", "\\u007f")
    sys.stdout.write(text + "\n")


def emit_json_line(data: Any) -> None:
    """One JSON object on one line of stdout, escaped as emit_json escapes, flushed at once (a
    stream of events is read as it is written)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=True, separators=(",", ":")).replace("\x7f", "\\u007f") + "\n")
    sys.stdout.flush()


def emit_raw(text: str, stream: IO[str] | None = None) -> None:
    """Data for a pipe or a file (a patch), never a terminal: the caller checked."""
    (stream or sys.stdout).write(text)
