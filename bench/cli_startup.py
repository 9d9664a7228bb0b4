"""Start-up cost of the commands that do not run the agent, against `python -c pass`.

    python bench/cli_startup.py [--rounds N]

The store holds 10 threads with 200 calls of history each (one thread has a real checkout, for
`diff`, and one paused call, for `pending`/`approve`/`reject`). Each round runs the bare
interpreter and every command once, in a new order each round, so drift on a shared machine hits
all of them alike. Prints per command the median [min-max] in ms and `ratio: X.XX` against the
floor measured in the same rounds. Goal: every ratio <= 5.0 (issue: no agents SDK, openai or
docker import where the engine is not needed).

Run as it is, the commands start as the environment says: with PYTHONDONTWRITEBYTECODE set (as
in this workplace) devagent's own modules are compiled from source at every start, which an
installed devagent never does. `--bytecode` lets the warm-up round write bytecode (to a temporary
PYTHONPYCACHEPREFIX, not beside the sources), as a user's second run has it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 5.0


def seed_store(home: Path, repo: Path) -> str:
    """10 threads x 200 calls of history; returns the id of the thread with a checkout."""
    from devagent.store import Store
    from devagent.workspace import ThreadWorkspace

    store = Store(home)
    real = "bench0000"
    for n in range(10):
        tid = real if n == 0 else f"bench{n:04d}"
        base = "0" * 40
        if tid == real:
            ws = ThreadWorkspace(tid, home / "threads" / tid)
            base = ws.create(repo)
            (ws.work_dir / "notes.txt").write_text("changed\n")
            ws.commit_turn("bench turn")
        store.create_thread(tid, str(repo), f"devagent/{tid}", base,
                            {"model": "m", "network": False, "database": "sqlite", "max_turns": 50})
        store.audit(tid, "task", actor="user", detail={"task": "benchmark history"})
        for c in range(200):
            call = f"call_{c}"
            args = json.dumps({"command": f"echo step {c} && make test"})
            store.add_pending(tid, call, "run_shell", args)
            store.decide(tid, call, "approved", actor="user")
            store.mark_status(tid, call, "done")
            store.audit(tid, "executed", call_id=call, tool="run_shell", actor="devagent",
                        detail={"output": f"[exit code 0]\nstep {c}\n"}, exit_code=0, duration_s=0.1)
        store.set_thread_state(tid, "done")
    store.add_pending(real, "call_pending", "run_shell", json.dumps({"command": "make test"}))
    store.save_run(real, "benchmark history", "{}")
    store.set_thread_state(real, "paused")
    store.close()
    return real


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                   env=env, cwd=cwd, check=False)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--bytecode", action="store_true",
                        help="Cache devagent's compiled modules, as an installed devagent has them.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, repo = Path(tmp) / "home", Path(tmp) / "repo"
        repo.mkdir()
        for cmd in (["init", "-q", "-b", "main"],
                    ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty", "-m", "x"]):
            subprocess.run(["git", "-C", str(repo), *cmd], check=True)
        tid = seed_store(home, repo)
        env = {**os.environ, "DEVAGENT_HOME": str(home), "PAGER": "cat", "XDG_CONFIG_HOME": str(Path(tmp) / "cfg")}
        if args.bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        devagent = [sys.executable, "-m", "devagent"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "--help": [*devagent, "--help"],
            "threads": [*devagent, "threads"],
            "pending": [*devagent, "pending", tid],
            "log": [*devagent, "log", tid],
            "approve": [*devagent, "approve", tid, "call_pending"],
            "reject": [*devagent, "reject", tid, "call_pending", "--reason", "bench"],
            "diff": [*devagent, "diff", tid],
            "config": [*devagent, "config"],
            "migrations": [*devagent, "migrations", tid],
        }
        if subprocess.run([*devagent, "rules", "--help"], capture_output=True, env=env).returncode == 0:
            commands["rules"] = [*devagent, "rules"]
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for name, argv in commands.items():  # warm the page cache
            timed(argv, env, repo)
        for _ in range(args.rounds):
            order = list(commands)
            random.shuffle(order)
            for name in order:
                samples[name].append(timed(commands[name], env, repo))
        floor = statistics.median(samples.pop("python -c pass"))
        cached = "; devagent's bytecode cached" if args.bytecode else ""
        print(f"python -c pass: {floor:.0f} ms (median of {args.rounds} rounds{cached})")
        for name, values in samples.items():
            med = statistics.median(values)
            print(f"devagent {name}: {med:.0f} ms [{min(values):.0f}-{max(values):.0f}]")
            print(f"ratio: {med / floor:.2f}  (devagent {name} vs python -c pass; goal <= {GOAL:.1f})")


if __name__ == "__main__":
    main()
