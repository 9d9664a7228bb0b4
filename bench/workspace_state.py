"""Cost of the workspace state an approval binds, against a bare walk of the same tree.

    python bench/workspace_state.py [--files N] [--runs N]

Builds a checkout with N files (a small repository plus a node_modules-like tree of 2 KB files),
then times: the first state (every file hashed), a state with the stat cache warm (nothing
changed), the fingerprint, and the floor: os.scandir + lstat of every entry. Prints medians and
`ratio: X.XX` (warm state / floor). Target: a warm state <= 3x the bare walk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from devagent.workspace import ThreadWorkspace


def walk(base: str) -> int:
    count, stack = 0, [base]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                entry.stat(follow_symlinks=False)
                count += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return count


def median_s(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="devagent-bench-"))
    try:
        repo = tmp / "repo"
        repo.mkdir()
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        (repo / "README.md").write_text("bench\n")
        subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "b"],
                       check=True)
        ws = ThreadWorkspace("bench", tmp / "thread")
        ws.create(repo)
        per_dir = 100
        for d in range(args.files // per_dir):
            directory = ws.work_dir / "node_modules" / f"pkg{d}"
            directory.mkdir(parents=True)
            for f in range(per_dir):
                (directory / f"f{f}.js").write_text("x" * 2000)
        (ws.root / "state-cache").unlink(missing_ok=True)
        started = time.perf_counter()
        state = ws.state()
        cold = time.perf_counter() - started
        time.sleep(1.1)  # past the racy window: files now come from the stat cache
        ws.state()
        warm = median_s(ws.state, args.runs)
        fingerprint = median_s(lambda: ws.state().fingerprint, 1) - warm
        floor = median_s(lambda: walk(str(ws.work_dir)), args.runs)
        print(f"entries: {len(state.entries)}")
        print(f"cold state (all hashed): {cold:.3f} s")
        print(f"warm state: {warm:.3f} s   bare walk: {floor:.3f} s   fingerprint: {max(fingerprint, 0):.3f} s")
        print(f"ratio: {warm / floor:.2f}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
