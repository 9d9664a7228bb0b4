"""devagent in a real pseudo-terminal (pexpect), watched through a terminal emulator (pyte), so a
test sees the screen a user sees (wrapping, line counts at a width) and every byte written."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pexpect
import pyte

LEGEND = r"s\]?(?:\x1b\[[0-9;]*m)* stop.*› "
# rich's own colour and style codes: the only escape sequences devagent may write.
SGR = re.compile(r"\x1b\[[0-9;]*m")
# What devagent itself writes besides colours: the status line's own redraw (hide and show the
# cursor, go back to the start of its line, erase it, one line up). Outside text is escaped, so none
# of these can come from it; they are allowed only in exactly the form the status line writes.
OWN = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\?25[lh]|\r(?:\x1b\[1A\x1b\[2K)+|\r\x1b\[2K")


class Terminal:
    def __init__(self, home: Path, repo: Path, *args: str, columns: int = 80, lines: int = 300,
                 env: dict[str, str] | None = None, timeout: float = 120) -> None:
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.Stream(self.screen)
        self.raw: list[str] = []
        # No pager: what is checked here is what devagent writes (paging is tested in test_review).
        full_env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test", "TERM": "xterm-256color",
                    "DEVAGENT_PAGER": "cat", **(env or {})}
        for name in ("COLUMNS", "LINES", "OPENAI_BASE_URL"):
            full_env.pop(name, None)
        self.child = pexpect.spawn(sys.executable, ["-m", "devagent", *args], cwd=str(repo), env=full_env,
                                   encoding="utf-8", timeout=timeout, dimensions=(lines, columns))
        self.child.logfile_read = self

    # pexpect's logfile interface: everything the program wrote goes to the emulator.
    def write(self, data: str) -> None:
        self.raw.append(data)
        self.stream.feed(data)

    def flush(self) -> None:
        pass

    def expect(self, pattern: Any) -> None:
        self.child.expect(pattern)

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def wait(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus if self.child.exitstatus is not None else -(self.child.signalstatus or 0)

    def close(self) -> None:
        self.child.close(force=True)

    @property
    def output(self) -> str:
        return "".join(self.raw)

    def lines(self) -> list[str]:
        """The screen, one string per row, trailing blank rows dropped."""
        rows = [row.rstrip() for row in self.screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def text(self) -> str:
        return "\n".join(self.lines())


def foreign_escapes(output: str) -> list[str]:
    """Every control or formatting character in `output` that is not part of rich's own SGR
    styling or an ordinary line end: what would reach the terminal from outside devagent."""
    import unicodedata

    rest = OWN.sub("", output)
    return sorted({f"U+{ord(c):04X}" for c in rest
                   if c not in "\r\n" and (unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")
                                           or c == "\x1b")})
