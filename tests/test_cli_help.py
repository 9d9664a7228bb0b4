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


def _commands(*group: str) -> list[tuple[str, ...]]:
    """Every command and subcommand, as the argv that reaches it."""
    text = devagent(*group, "--help").stdout
    if "Commands:" not in text:
        return [group]
    found = [group] if group else []
    for name in re.findall(r"^  (\w[\w-]*)\s{2,}", text.split("Commands:")[1], re.MULTILINE):
        found += _commands(*group, name)
    return found


def _undescribed(text: str) -> list[str]:
    """Option and argument lines of a help text with no description beside or under them."""
    missing = []
    for section in ("Options:", "Arguments:"):
        if section not in text:
            continue
        lines = text.split(section, 1)[1].split("\n\n", 1)[0].splitlines()
        for i, line in enumerate(lines):
            if not re.match(r"^  \S", line):
                continue  # a description's continuation
            # "[required]" or "[default: .]" alone describes nothing.
            described = re.search(r"\S\s{2,}(?!\[)\S", line.strip())
            continued = i + 1 < len(lines) and re.match(r"^\s{6,}\S", lines[i + 1])
            if not described and not continued:
                missing.append(line.strip())
    return missing


def test_every_option_and_argument_of_every_command_is_described() -> None:
    commands = _commands()
    assert ("sandbox", "build") in commands and ("rules", "add") in commands and ("shell",) in commands
    for argv in commands:
        text = devagent(*argv, "--help").stdout
        assert text.startswith("Usage: devagent"), argv
        assert not re.search(r"\{\w+\}|<\w+(\[\w+\])?>|\[\[", text), (argv, text)
        assert _undescribed(text) == [], (argv, text)
        assert text.count("Arguments:") <= 1 and "Positional arguments" not in text, (argv, text)


def test_task_help_has_examples_and_speaks_of_steps() -> None:
    text = devagent("task", "--help").stdout
    assert "Examples:" in text and 'devagent task "' in text
    assert re.search(r"--max-steps, --max-turns N\s+Model round trips \(steps\)", text) or \
        re.search(r"--max-steps.*--max-turns", text), text


def test_max_turns_is_an_alias_of_max_steps() -> None:
    for flag in ("--max-steps", "--max-turns"):
        refused = devagent("task", "x", flag, "0")
        assert refused.returncode == 2 and "0 is not in the range" in refused.stderr, refused.stderr


def test_shell_completion_can_be_installed() -> None:
    assert "--install-completion" in devagent("--help").stdout
    # Typed at a bash prompt: the shell is found from the parent process (so the test does not
    # depend on what runs pytest).
    shown = subprocess.run(["/bin/bash", "-c", '"$0" -m devagent --show-completion; exit $?', sys.executable],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert shown.returncode == 0, shown.stderr
    assert "complete -o default -F _devagent_completion devagent" in shown.stdout
