"""What a turn commits and how its result is reviewed: default excludes, the size warning, a capped
summary that counts failures, and `diff`/`log` through a pager on a terminal only.

Real git, Docker and the CLI with the OpenAI-compatible stub; the pager in a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")

MAKE_ENV = ("mkdir -p .venv/bin && ln -s /usr/bin/python3 .venv/bin/python3 && echo 'home = /usr/bin' > .venv/pyvenv.cfg "
            "&& mkdir -p node_modules/left-pad src/__pycache__ .pytest_cache "
            "&& echo 'module.exports = 1' > node_modules/left-pad/index.js && touch src/__pycache__/app.cpython-311.pyc "
            "&& echo 'print(1)' > src/app.py && touch .pytest_cache/README.md")


def git_files(home: Path, thread_id: str) -> list[str]:
    import subprocess

    out = subprocess.run(["git", "-c", "safe.directory=*", "--git-dir", str(home / "threads" / thread_id / "git"),
                          "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def run_turn(cli, llm, *steps, task: str = "set things up"):
    llm.script(*steps, {"content": "done"})
    started = cli("task", task, "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    thread_id = json.loads(started.stdout.splitlines()[-1])["thread"]
    if started.returncode != 3:  # nothing to approve: the turn is already done
        return thread_id, started
    assert cli("approve", thread_id, "--all").returncode == 0
    return thread_id, cli("resume", thread_id)


def test_environments_and_caches_are_not_committed_with_the_turn(cli, llm, home: Path) -> None:
    thread_id, done = run_turn(cli, llm, {"tool_calls": [tool_call("run_shell", {"command": MAKE_ENV}, "s1")]})
    assert done.returncode == 0, done.stderr
    work = home / "threads" / thread_id / "workspace"
    assert (work / ".venv" / "bin" / "python3").exists()  # still there for the next command
    assert git_files(home, thread_id) == ["Makefile", "README.md", "src/app.py"]


def test_the_repositorys_gitignore_can_bring_a_default_exclude_back(cli, llm, home: Path) -> None:
    thread_id, done = run_turn(cli, llm, {"tool_calls": [
        tool_call("write_file", {"path": ".gitignore", "content": "!node_modules/\n"}, "w1"),
        tool_call("run_shell", {"command": MAKE_ENV}, "s1")]})
    assert done.returncode == 0, done.stderr
    assert git_files(home, thread_id) == [".gitignore", "Makefile", "README.md", "node_modules/left-pad/index.js",
                                          "src/app.py"]


def test_a_big_turn_is_warned_about_and_its_summary_is_capped_and_counts_failures(cli, llm, home: Path) -> None:
    many = "mkdir gen && for i in $(seq 600); do echo $i > gen/file$i.txt; done"
    thread_id, done = run_turn(cli, llm, {"tool_calls": [
        tool_call("run_shell", {"command": many}, "s1"),
        tool_call("run_shell", {"command": "false"}, "s2"),
        tool_call("run_shell", {"command": "exit 3"}, "s3")]})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"thread {thread_id} done: 3 commands run (2 failed), committed" in out
    listed = [line for line in out.splitlines() if "|" in line and "gen/file" in line]
    assert len(listed) == 20
    assert "… and 580 more files" in out
    assert "600 files changed" in out
    assert "warning: this turn added 600 files" in out and "add them to .gitignore" in out
    assert len(git_files(home, thread_id)) == 602  # warned, not refused


def test_a_turn_that_changed_nothing_prints_no_review_hints(cli, llm) -> None:
    thread_id, done = run_turn(cli, llm, {"tool_calls": [tool_call("run_shell", {"command": "true"}, "s1")]})
    assert done.returncode == 0, done.stderr
    assert "1 command run, no file changes" in done.stdout
    assert "devagent apply" not in done.stdout


def spawn(home: Path, repo: Path, *args: str, pager: str | None) -> pexpect.spawn:
    env = {**os.environ, "DEVAGENT_HOME": str(home), "COLUMNS": "120", "TERM": "xterm"}
    env.pop("PAGER", None)
    if pager is not None:
        env["DEVAGENT_PAGER"] = pager
    return pexpect.spawn(sys.executable, ["-m", "devagent", *args], cwd=str(repo), env=env,
                         encoding="utf-8", timeout=60, dimensions=(40, 120))


def test_diff_and_log_use_a_pager_on_a_terminal_only(cli, llm, home: Path, repo: Path) -> None:
    thread_id, done = run_turn(cli, llm, {"tool_calls": [
        tool_call("write_file", {"path": "notes.txt", "content": "a note\n"}, "w1")]})
    assert done.returncode == 0, done.stderr
    pager = "sed 's/^/PAGED> /'"
    for command, expected in (("diff", "notes.txt"), ("log", "set things up")):
        child = spawn(home, repo, command, thread_id, pager=pager)
        child.expect(pexpect.EOF)
        assert "PAGED> " in child.before and expected in child.before, command  # a terminal: paged
        child = spawn(home, repo, command, thread_id, "--no-pager", pager=pager)
        child.expect(pexpect.EOF)
        assert "PAGED> " not in child.before and expected in child.before, command
        # Not a terminal (a pipe, CI): never paged, even with a pager configured.
        piped = cli(command, thread_id, env={"DEVAGENT_PAGER": pager})
        assert piped.returncode == 0 and "PAGED> " not in piped.stdout and expected in piped.stdout
    child = spawn(home, repo, "diff", thread_id, pager=pager)
    child.expect(pexpect.EOF)
    lines = [line for line in child.before.splitlines() if line.strip()]
    assert all(line.startswith("PAGED> ") for line in lines)  # every line went through the pager,
    assert "\x1b[" in child.before and "+a note" in child.before  # in colour


def test_the_project_config_replaces_the_exclude_list_and_the_warning_limits(cli, llm, home: Path, repo: Path) -> None:
    (repo / ".devagent").mkdir()
    (repo / ".devagent" / "config.toml").write_text(
        '[commit]\nexclude = ["build/", "*.log"]\nwarn_files = 3\n')
    make = MAKE_ENV + " && mkdir build && echo x > build/out.o && echo y > run.log"
    thread_id, done = run_turn(cli, llm, {"tool_calls": [tool_call("run_shell", {"command": make}, "s1")]})
    assert done.returncode == 0, done.stderr
    files = git_files(home, thread_id)
    # Its own list replaced the default: node_modules is committed now, build/ and *.log are not.
    assert "node_modules/left-pad/index.js" in files and "src/app.py" in files
    assert not [f for f in files if f.startswith("build/") or f.endswith(".log")]
    assert "warning: this turn added" in done.stdout  # over the project's limit of 3 files
