"""Long output (`diff`, `log`) goes through a pager on a terminal, the way git does it.

The pager is `DEVAGENT_PAGER`, else `PAGER`, else `less` (with `LESS=FRX` unless set: quit when it
fits on one screen, keep colours, leave the text on the screen). An empty value or `cat` means no
pager; so does `--no-pager`, and so does output that is not a terminal.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

from devagent.term import Screen


def pager_command(no_pager: bool = False) -> str | None:
    if no_pager or not sys.stdout.isatty():
        return None
    for name in ("DEVAGENT_PAGER", "PAGER"):
        if name in os.environ:
            command = os.environ[name].strip()
            break
    else:
        command = "less"
    return None if command in ("", "cat") else command


def _page(text: str, command: str) -> None:
    """Show `text`, what a `pager_screen` rendered (escaped), through the pager `command` (run by
    the shell, as git does)."""
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    env.setdefault("LV", "-c")
    data = text.encode("utf-8", "replace")
    try:
        proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env)
    except OSError:
        sys.stdout.write(text)
        return
    try:
        proc.stdin.write(data)  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    except BrokenPipeError:
        pass  # the user quit the pager early
    if proc.wait() == 127:  # the shell could not find the pager: show the text anyway
        sys.stdout.write(text)


def pager_screen(no_pager: bool = False) -> Screen:
    """A Screen for long output: it writes to the terminal, or collects what is printed (escaped,
    like everything a Screen prints) for the pager when one applies (then call `finish_paging`)."""
    from rich.console import Console

    terminal = Console(highlight=False)
    command = pager_command(no_pager)
    if command is None:
        return Screen(console=terminal)
    console = Console(file=io.StringIO(), force_terminal=True, color_system=terminal.color_system,
                      width=terminal.width, highlight=False)
    console.pager_command = command  # type: ignore[attr-defined]
    return Screen(console=console)


def finish_paging(screen: Screen) -> None:
    """Hand what a `pager_screen` collected to the pager (nothing to do without one)."""
    command = getattr(screen.existing_console, "pager_command", None)
    if command is not None:
        _page(screen.console.file.getvalue(), command)  # type: ignore[attr-defined]


__all__ = ["pager_command", "pager_screen", "finish_paging"]
