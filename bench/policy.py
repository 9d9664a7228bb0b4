"""Time one rules decision: a 1-line and a 100-line script, with the read-only preset and a few
project rules loaded (as `devagent task` does before every run_shell approval).

    python bench/policy.py [--runs N]

Prints microseconds per decision, CPU and wall clock (medians of N). It must not be felt next to a command's run.
"""

from __future__ import annotations

import argparse
import statistics
import time

from devagent.policy import Policy, Rule, read_preset


def rules() -> Policy:
    own = [Rule("allow", (("pytest",),)), Rule("allow", (("make",), ("test", "lint"))),
           Rule("forbid", (("rm",), ("-rf", "-fr")), reason="delete by hand"), Rule("prompt", (("git",), ("push",)))]
    return Policy(read_preset("read-only")[0] + own)


ONE_LINE = "git log --oneline -n 5 && pytest -q tests/test_x.py | tail -20"
LINES = [
    "cd src && ls -la",
    "grep -rn 'TODO' . | head -20",
    "git diff HEAD~1 -- app.py",
    "make test 2>&1 | tail -50",
    "find . -name '*.py' -type f | wc -l",
]
HUNDRED_LINES = "\n".join(LINES[i % len(LINES)] for i in range(100))


def per_decision_us(policy: Policy, command: str, runs: int) -> tuple[float, float, str]:
    """Median wall-clock and CPU microseconds per decision (CPU time is what a busy machine
    cannot inflate)."""
    decision = policy.decide(command).decision  # warm: parser built, preset read
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        policy.decide(command)
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return statistics.median(wall) * 1e6, statistics.median(cpu) * 1e6, decision


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    policy = rules()
    for label, command in (("1-line script", ONE_LINE), ("100-line script", HUNDRED_LINES)):
        wall, cpu, decision = per_decision_us(policy, command, args.runs)
        print(f"{label}: {cpu:.0f} µs CPU per decision, {wall:.0f} µs wall "
              f"({decision}, {len(policy.rules)} rules, median of {args.runs})")


if __name__ == "__main__":
    main()
