"""The commands that do not run the agent start without the agents SDK, openai, docker or GitPython
(their git is plain `git`); `approve` and `reject` only record a decision: not even the runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devagent.store import Store
from devagent.workspace import ThreadWorkspace

HEAVY = {"agents", "openai", "docker", "git"}  # "git": GitPython
# What only running a turn needs (the runner, its sandbox and the SDK's tools).
RUNNER = {"devagent.runner", "devagent.sandbox", "devagent.tools", "devagent.agent"}


def _seed(home: Path, repo: Path) -> str:
    """A paused thread with a real checkout, two pending calls and some history; returns its id."""
    store = Store(home)
    tid = "feed0001"
    ws = ThreadWorkspace(tid, home / "threads" / tid)
    base = ws.create(repo)
    (ws.work_dir / "notes.txt").write_text("changed\n")
    ws.commit_turn("a turn")
    store.create_thread(tid, str(repo), ws.branch, base,
                        {"model": "m", "network": False, "database": "sqlite", "max_turns": 50})
    store.audit(tid, "task", actor="user", detail={"task": "history"})
    for n in range(20):
        store.add_pending(tid, f"old{n}", "run_shell", json.dumps({"command": f"echo {n}"}))
        store.decide(tid, f"old{n}", "approved", actor="user")
        store.mark_status(tid, f"old{n}", "done")
        store.audit(tid, "executed", call_id=f"old{n}", tool="run_shell", actor="devagent",
                    detail={"output": f"[exit code 0]\n{n}\n"}, exit_code=0, duration_s=0.1)
    store.add_pending(tid, "c1", "run_shell", json.dumps({"command": "make test"}))
    store.add_pending(tid, "c2", "run_shell", json.dumps({"command": "ls"}))
    store.save_run(tid, "history", "{}")
    store.set_thread_state(tid, "paused")
    store.close()
    return tid


def test_commands_that_do_not_run_the_agent_import_no_sdk_openai_or_docker(home: Path, repo: Path) -> None:
    tid = _seed(home, repo)
    env = {**os.environ, "PAGER": "cat"}
    commands = [["--help"], ["threads"], ["threads", "--json"], ["threads", "--wide"], ["pending", tid],
                ["pending", tid, "--json"], ["log", tid], ["log", tid, "--output"], ["diff", tid],
                ["diff", tid, "--stat"], ["rules"], ["rules", "check", "make test"], ["config"],
                ["config", "--json"], ["migrations", tid], ["approve", tid, "c1"], ["reject", tid, "c2", "--reason", "not now"]]
    outputs = {}
    for args in commands:
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "devagent", *args], cwd=repo, env=env,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        assert result.returncode == 0, (args, result.stderr[-500:])
        modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                   if line.startswith("import time:")}
        imported = {name.split(".")[0] for name in modules}
        assert len(imported) > 20, args  # the import log was read
        assert not imported & HEAVY, (args, imported & HEAVY)
        if args[0] in ("approve", "reject", "pending", "diff", "log", "threads", "migrations", "config", "--help"):
            assert not modules & RUNNER, (args, modules & RUNNER)
        outputs[" ".join(args)] = result.stdout
    # They did their work, not just start.
    assert tid in outputs["threads"] and "make test" in outputs[f"pending {tid}"] and "notes.txt" in outputs[f"diff {tid}"]
    assert "sandbox.output_limit" in outputs["config"] and "16384" in outputs["config"]
    store = Store(home)
    assert store.approval(tid, "c1").status == "approved" and store.approval(tid, "c2").status == "rejected"
