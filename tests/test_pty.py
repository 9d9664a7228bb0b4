"""The interactive approval prompt in a real pseudo-terminal (pexpect)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")

HIDDEN = "\x1b]0;HACKED\x07\x1b[8m"  # retitle the terminal, then conceal what follows


def spawn(home: Path, repo: Path, *args: str) -> pexpect.spawn:
    env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test", "COLUMNS": "200", "TERM": "xterm"}
    return pexpect.spawn(sys.executable, ["-m", "devagent", *args], cwd=str(repo), env=env,
                         encoding="utf-8", timeout=90, dimensions=(50, 200))


def test_escaped_command_is_shown_and_n_means_it_never_runs(home: Path, repo: Path, llm) -> None:
    command = f"echo safe{HIDDEN} && touch ran.txt"
    llm.script({"tool_calls": [tool_call("run_shell", {"command": command}, "s1")]}, {"content": "understood"})
    child = spawn(home, repo, "task", "do it", "--base-url", llm.url, "--model", "stub")
    child.expect("approve\\? ")
    screen = child.before
    assert "⟪U+001B ESC⟫]0;HACKED⟪U+0007 BEL⟫⟪U+001B ESC⟫[8m" in screen
    assert "\x1b]0;HACKED" not in screen and "\x1b[8m" not in screen
    assert "touch ran.txt" in screen
    assert "hidden or control characters" in screen
    child.sendline("n")
    child.expect("reason")
    child.sendline("do not touch files")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    [thread] = [p.name for p in (home / "threads").iterdir()]
    assert not (home / "threads" / thread / "workspace" / "ran.txt").exists()
    assert "do not touch files" in llm.tool_outputs()["s1"]


def test_y_runs_exactly_the_shown_command_and_streams_its_output(home: Path, repo: Path, llm) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "echo streamed-$((6*7))"}, "s1")]},
               {"content": "all good"})
    child = spawn(home, repo, "task", "do it", "--base-url", llm.url, "--model", "stub")
    child.expect("approve\\? ")
    assert "echo streamed-$((6*7))" in child.before
    child.sendline("y")
    child.expect("streamed-42")
    child.expect("all good")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_at_the_prompt_runs_nothing_and_keeps_the_run(home: Path, repo: Path, llm, cli) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "touch ran.txt"}, "s1")]}, {"content": "ok"})
    child = spawn(home, repo, "task", "do it", "--base-url", llm.url, "--model", "stub")
    child.expect("approve\\? ")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    [thread] = [p.name for p in (home / "threads").iterdir()]
    assert not (home / "threads" / thread / "workspace" / "ran.txt").exists()
    pending = json.loads(cli("pending", thread, "--json").stdout)
    assert [p["call_id"] for p in pending] == ["s1"]


def test_shell_opens_the_threads_container_for_the_user(home: Path, repo: Path, llm, cli) -> None:
    llm.script({"tool_calls": [tool_call("write_file", {"path": "made-by-agent.txt", "content": "x\n"}, "w1")]},
               {"content": "done"})
    started = cli("task", "write a file", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    thread_id = json.loads(started.stdout)["thread"]
    child = spawn(home, repo, "shell", thread_id)
    child.sendline("ls; echo shell-$((40+2)); exit 7")
    child.expect("made-by-agent.txt")
    child.expect("shell-42")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 7


def test_resume_on_a_terminal_asks_for_what_ci_left_pending(home: Path, repo: Path, llm, cli) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "echo later > later.txt"}, "s1")]},
               {"content": "finished later"})
    paused = cli("task", "do it later", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert paused.returncode == 3
    thread_id = json.loads(paused.stdout)["thread"]
    child = spawn(home, repo, "resume", thread_id)
    child.expect("approve\\? ")
    assert "echo later > later.txt" in child.before
    child.sendline("y")
    child.expect("finished later")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (home / "threads" / thread_id / "workspace" / "later.txt").read_text() == "later\n"
