"""Start-up cost of the CLI: `devagent --help` and `devagent threads` vs `python -c pass`.

    python bench/cli_startup.py [--runs N]

Target: `devagent --help` <= 0.25 s median. Prints medians and `ratio: X.XX` against the
bare interpreter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def median_s(argv: list[str], runs: int, env: dict[str, str]) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DEVAGENT_HOME": home}
        floor = median_s([sys.executable, "-c", "pass"], args.runs, env)
        print(f"python -c pass: {floor * 1000:.0f} ms")
        for label, argv in (("devagent --help", ["--help"]), ("devagent threads", ["threads"])):
            took = median_s([sys.executable, "-m", "devagent", *argv], args.runs, env)
            print(f"{label}: {took * 1000:.0f} ms (median of {args.runs})")
            print(f"ratio: {took / floor:.2f}  ({label} vs python -c pass)")


if __name__ == "__main__":
    main()
