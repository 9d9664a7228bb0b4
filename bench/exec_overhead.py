"""devagent's command path vs the same work through plain docker-py, on identical containers.

    python bench/exec_overhead.py [--runs N]

Both containers are made by devagent's own ThreadContainer (same image, user, mounts, limits,
hardening, network), each under a unique name, so two runs on one engine never touch each
other's containers. The floor is docker-py `exec_run(["true"])` as the sandbox user. Measured:

1. `ThreadContainer.exec("true")` vs the floor.
2. `execute_command` (what an approved `run_shell` runs: the store's bookkeeping, the workspace
   check before and the state after, the exec) vs the floor. Goal (issue 15, goal 2) <= 1.15.
3. A stopped container's first command (start + exec) vs docker-py `start` + `exec_run`.

Each round runs both sides once, the order alternating per round, so drift on a shared machine
hits both alike. Prints median [min-max] per side and `ratio:` lines (median of the per-round
ratios) beside the goal.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker

from devagent.config import sandbox_user
from devagent.execution import ToolRuntime, current_fingerprint, execute_command, record_seen
from devagent.sandbox import ContainerSpec, ThreadContainer, build_images, remove_thread_resources
from devagent.store import Store
from devagent.workspace import ThreadWorkspace


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def rounds(n: int, ours: Callable[[int], object], floor: Callable[[int], object],
           before: Callable[[], object] | None = None) -> tuple[list[float], list[float]]:
    """n rounds of (ours, floor), the order alternating; `before` runs untimed before each side."""
    a, b = [], []
    for i in range(n):
        sides = [(a, ours), (b, floor)] if i % 2 == 0 else [(b, floor), (a, ours)]
        for samples, fn in sides:
            if before is not None:
                before()
            samples.append(timed(lambda fn=fn: fn(i)))
    return a, b


def report(name: str, ours: list[float], floor: list[float], goal: float | None) -> None:
    ratios = [x / y for x, y in zip(ours, floor)]
    print(f"{name}: devagent {statistics.median(ours):.1f} ms [{min(ours):.1f}-{max(ours):.1f}], "
          f"docker-py {statistics.median(floor):.1f} ms [{min(floor):.1f}-{max(floor):.1f}] ({len(ours)} rounds)")
    target = f"goal <= {goal:.2f}" if goal else "no goal of its own"
    print(f"ratio: {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]  ({name}; {target})")


def make_box(client, tmp: Path, repo: Path, tid: str) -> tuple[ThreadWorkspace, ThreadContainer]:
    ws = ThreadWorkspace(tid, tmp / "threads" / tid)
    ws.create(repo, owner=sandbox_user())
    return ws, ThreadContainer(client, ContainerSpec(tid, ws.work_dir, ws.git_dir))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    client = docker.from_env()
    build_images(client)
    uid, gid = sandbox_user()
    run_id = uuid.uuid4().hex[:8]
    ours_id, floor_id = f"bench{run_id}a", f"bench{run_id}b"

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        repo = tmp / "repo"
        repo.mkdir()
        for cmd in (["init", "-q"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty", "-m", "x"]):
            subprocess.run(["git", "-C", str(repo), *cmd], check=True)
        ws, box = make_box(client, tmp, repo, ours_id)
        _, twin = make_box(client, tmp, repo, floor_id)
        store = Store(tmp / "home")
        store.create_thread(ours_id, str(repo), ws.branch, "0" * 40, {})
        rt = ToolRuntime(thread_id=ours_id, store=store, workspace=ws, container=box, network=False,
                         sandbox_owner=(uid, gid))
        try:
            box.ensure_running()
            twin.ensure_running()
            raw = client.containers.get(twin.spec.name)
            floor_exec = lambda _i: raw.exec_run(["true"], user=f"{uid}:{gid}")  # noqa: E731
            for _ in range(3):  # warm up every path
                box.exec("true")
                floor_exec(0)

            ours, floor = rounds(args.runs, lambda _i: box.exec("true"), floor_exec)
            report("ThreadContainer.exec(true)", ours, floor, None)

            fingerprint = current_fingerprint(ws)

            def approved_call(i: int) -> None:
                # What the screen and the decision leave behind (not timed): a call approved on
                # the workspace state it was shown with.
                call = f"call{i}"
                store.add_pending(ours_id, call, "run_shell", f'{{"command": "true", "n": {i}}}')
                record_seen(store, ours_id, call, fingerprint)
                store.decide(ours_id, call, "approved", actor="user")

            for i in range(args.runs):
                approved_call(i)
            ours, floor = rounds(args.runs, lambda i: execute_command(rt, f"call{i}", "true", None), floor_exec)
            report("execute_command(true), all bookkeeping", ours, floor, 1.15)

            resume_runs = max(5, args.runs // 4)

            def stop_both() -> None:
                box.stop()
                twin.stop()

            def ours_resume(_i: int) -> None:
                box.ensure_running()
                box.exec("true")

            def floor_resume(_i: int) -> None:
                raw.start()
                floor_exec(0)

            ours, floor = rounds(resume_runs, ours_resume, floor_resume, before=stop_both)
            report("stopped container -> first command done", ours, floor, 1.2)
        finally:
            store.close()
            remove_thread_resources(client, ours_id)
            remove_thread_resources(client, floor_id)


if __name__ == "__main__":
    sys.exit(main())
