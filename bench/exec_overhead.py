"""devagent's sandbox exec and thread resume vs the same work through plain docker-py.

    python bench/exec_overhead.py [--runs N]

Prints medians and `ratio: X.XX` lines (devagent / docker-py floor). Targets: exec <= 1.1x,
resume (stopped container -> first command finished) <= 1.2x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

from devagent.config import SANDBOX_IMAGE, sandbox_user
from devagent.sandbox import ContainerSpec, ThreadContainer, build_images, remove_thread_resources
from devagent.workspace import ThreadWorkspace


def median_ms(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    client = docker.from_env()
    build_images(client)
    uid, gid = sandbox_user()

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        import subprocess

        for cmd in (["init", "-q"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty", "-m", "x"]):
            subprocess.run(["git", "-C", str(repo), *cmd], check=True)
        ws = ThreadWorkspace("bench", Path(tmp) / "threads" / "bench")
        ws.create(repo, owner=sandbox_user())
        box = ThreadContainer(client, ContainerSpec("bench", ws.work_dir, ws.git_dir))
        raw = client.containers.run(SANDBOX_IMAGE, name="devagent-bench-raw", detach=True, network_mode="none",
                                    user=f"{uid}:{gid}", labels={"org.devagent.thread": "bench"})
        try:
            box.ensure_running()
            for _ in range(3):  # warm up both paths
                box.exec("true")
                raw.exec_run(["true"], user=f"{uid}:{gid}")

            # Interleave the two so drift on the machine hits both equally.
            ours, floor = [], []
            for _ in range(args.runs):
                ours.append(median_ms(lambda: box.exec("true"), 1))
                floor.append(median_ms(lambda: raw.exec_run(["true"], user=f"{uid}:{gid}"), 1))
            exec_ours, exec_floor = statistics.median(ours), statistics.median(floor)
            print(f"exec `true`: devagent {exec_ours:.1f} ms, docker-py exec_run {exec_floor:.1f} ms (median of {args.runs})")
            print(f"ratio: {exec_ours / exec_floor:.2f}  (exec overhead; target <= 1.10)")

            ours, floor = [], []
            resume_runs = max(5, args.runs // 4)
            for _ in range(resume_runs):
                box.stop()
                started = time.perf_counter()
                box.ensure_running()
                box.exec("true")
                ours.append((time.perf_counter() - started) * 1000)

                raw.stop(timeout=3)
                started = time.perf_counter()
                raw.start()
                raw.exec_run(["true"], user=f"{uid}:{gid}")
                floor.append((time.perf_counter() - started) * 1000)
            res_ours, res_floor = statistics.median(ours), statistics.median(floor)
            print(f"resume (stopped -> first command done): devagent {res_ours:.1f} ms, "
                  f"docker-py start+exec {res_floor:.1f} ms (median of {resume_runs})")
            print(f"ratio: {res_ours / res_floor:.2f}  (resume overhead; target <= 1.20)")
        finally:
            raw.remove(force=True)
            remove_thread_resources(client, "bench")


if __name__ == "__main__":
    sys.exit(main())
