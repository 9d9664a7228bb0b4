"""The command line itself: version, and help texts a user can read (no internals)."""

from __future__ import annotations

import re
import subprocess
import sys


def devagent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devagent", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})


def test_version() -> None:
    result = devagent("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"devagent \d+\.\d+\.\d+\S*\n", result.stdout)


def test_every_help_text_speaks_to_users() -> None:
    top = devagent("--help").stdout
    commands = re.findall(r"^  (\w[\w-]*)\s{2,}", top.split("Commands:")[1], re.MULTILINE)
    assert {"task", "resume", "pending", "approve", "reject", "threads", "log", "diff", "apply",
            "discard", "config"} <= set(commands)
    for command in commands:
        text = devagent(command, "--help").stdout
        assert text.startswith("Usage: devagent"), command
        # Placeholders of the argument parser's internals ({text}, <list[str]>, [[ID]]) never show.
        assert not re.search(r"\{\w+\}|<\w+(\[\w+\])?>|\[\[", text), (command, text)
