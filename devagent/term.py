"""The one way devagent writes to the terminal and reads keys from it.

Text that came from the model, the workspace or the database can hold escape sequences that
rewrite the screen, set the title, write the clipboard or clear the scrollback. So nothing is
printed as a plain string: every piece of text is a `Shown`, and the only way to make one is
`shown()`, which escapes it with `render_exact`. `Screen.print` accepts only `Shown` and the
containers (panels, tables, groups) and renderables built from them, and refuses a `str` or a
plain rich `Text` at once, so a raw print of untrusted text cannot be written by mistake. (rich
adds its own colour codes; nothing else reaches the terminal.)

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
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from devagent.display import render_exact, render_head, render_inline

# Output on a pipe or file is not wrapped: commands and results stay on one line, copy-pasteable.
UNWRAPPED_WIDTH = 100_000


class Shown(Text):
    """Escaped text, safe to print. Made only by `shown()`; appending a `str` escapes it too."""

    def append(self, text: Any, style: Any = None) -> Shown:  # type: ignore[override]
        if isinstance(text, str):
            text = render_exact(text)
        elif not isinstance(text, Shown):
            raise TypeError(f"only escaped text can be appended to shown text, not {type(text).__name__}")
        super().append(text, style)
        return self

    def append_text(self, text: Text) -> Shown:  # type: ignore[override]
        if not isinstance(text, Shown):
            raise TypeError("only escaped text can be appended to shown text")
        super().append_text(text)
        return self


Part = str | tuple[str, str]


def shown(*parts: Part, style: str = "", inline: bool = False, limit: int | None = None) -> Shown:
    """Escaped text from `parts` (each a string or a (string, style) pair).

    inline: for a place that holds one line; newlines become visible tokens too.
    limit: show at most this many characters of each part, then say how much was left out.
    """
    out = Shown(style=style, end="\n", no_wrap=False)
    for part in parts:
        text, part_style = (part, "") if isinstance(part, str) else part
        if limit is not None:
            head, left = render_head(text, limit)
            rendered = head.replace("\n", render_inline("\n")) if inline else head
            Text.append(out, rendered, part_style or None)
            if left:
                Text.append(out, f"… ({left} more characters)", "dim")
            continue
        Text.append(out, render_inline(text) if inline else render_exact(text), part_style or None)
    return out


class SafeRenderable:
    """Base of renderables whose every character of outside text is escaped when they are built."""


def check_printable(item: Any) -> None:
    """Refuse anything that could carry text that was not escaped by `shown()`."""
    if isinstance(item, (Shown, SafeRenderable)):
        return
    if isinstance(item, str) or isinstance(item, Text):
        raise TypeError(f"refusing to print a {type(item).__name__}: build it with devagent.term.shown()")
    if isinstance(item, Panel):
        for part in (item.renderable, item.title, item.subtitle):
            if part is not None:
                check_printable(part)
        return
    if isinstance(item, Table):
        for part in (item.title, item.caption):
            if part is not None:
                check_printable(part)
        for column in item.columns:
            for cell in [column.header, column.footer, *column._cells]:
                if cell != "":  # an empty cell shows nothing
                    check_printable(cell)
        return
    if isinstance(item, Group):
        for part in item.renderables:
            check_printable(part)
        return
    if isinstance(item, Padding):
        check_printable(item.renderable)
        return
    raise TypeError(f"refusing to print a {type(item).__name__}: not built from escaped text")


class Screen:
    """A terminal (stdout, or stderr when stdout carries JSON) that prints only escaped text."""

    def __init__(self, stderr: bool = False, console: Console | None = None) -> None:
        # wraps: lines are wrapped (and panels widened) to the terminal's width; off a terminal a
        # line stays whole.
        self.wraps = True
        if console is None:
            stream = sys.stderr if stderr else sys.stdout
            self.wraps = stream.isatty()
            console = Console(stderr=stderr, highlight=False, markup=False, emoji=False,
                              width=None if self.wraps else UNWRAPPED_WIDTH)
        self.console = console
        self._stdin = sys.stdin

    @property
    def is_terminal(self) -> bool:
        return self.console.is_terminal

    @property
    def width(self) -> int:
        return self.console.width

    @property
    def height(self) -> int:
        return self.console.height

    def print(self, *items: RenderableType, end: str = "\n") -> None:
        for item in items:
            check_printable(item)
        # soft_wrap off a terminal: a long line stays one line.
        self.console.print(*items, end=end, soft_wrap=not self.wraps, highlight=False, markup=False,
                           emoji=False)

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
            self.console.print(*items, highlight=False, markup=False, emoji=False)

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
