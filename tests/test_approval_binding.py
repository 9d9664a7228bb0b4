"""An approval binds the state of the workspace the last screen showed, on every path.

Real CLI, real Docker, real git, the OpenAI-compatible stub. The workspace is changed from the
test, the way a process left in the sandbox would change it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")


def test_approve_on_the_command_line_binds_the_state_the_screen_showed_not_the_state_at_approve(
        cli, llm, home: Path) -> None:
    llm.script(
        {"tool_calls": [tool_call("run_shell", {"command": "make test > out.txt"}, "s1")]},
        {"content": "tests run"},
    )
    paused = cli("task", "run the tests", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert paused.returncode == 3, paused.stderr
    thread = json.loads(paused.stdout.splitlines()[-1])["thread"]
    workspace = home / "threads" / thread / "workspace"

    # Changed after the screen, before `approve`: the human approves what they saw, not this.
    (workspace / "Makefile").write_text("test:\n\t@echo injected\n")
    assert cli("approve", thread, "s1").returncode == 0
    resumed = cli("resume", thread, "--no-input", "--json")
    assert resumed.returncode == 3, resumed.stderr
    assert not (workspace / "out.txt").exists()
    [again] = json.loads(resumed.stdout.splitlines()[-1])["pending"]
    assert again["call_id"] == "s1" and "M Makefile" in again["changed_files"]
    assert "workspace changed before it started" in again["workspace_notice"]

    # `pending` shows the new state; approving after it binds that one, and the command runs.
    assert "M Makefile" in cli("pending", thread).stdout
    assert cli("approve", thread, "s1").returncode == 0
    done = cli("resume", thread, "--no-input")
    assert done.returncode == 0, done.stderr
    assert (workspace / "out.txt").read_text() == "injected\n"
