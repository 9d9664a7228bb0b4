"""What a user waits for in a turn, against the floor of doing the same by hand.

    python bench/turn.py [--rounds N] [--calls N] [--only new|resume|long]

1. New thread -> first approval screen (`devagent task --no-input` with a scripted server that
   proposes a command at once, until it exits 3) vs `python -c "import agents"` + `git clone
   --local` + `docker run -d` of the sandbox image. Goal <= 1.5.
2. `devagent approve` + `devagent resume` of one call vs `python -c "import agents"` + `docker
   start` + `docker exec`. Goal <= 1.3.
3. A turn of N tool calls (default 200) with an approve-always rule, the scripted server answering
   every step: the per-call time of calls 190-200 vs calls 10-20. Goal <= 1.2 (flat). Beside it,
   the same turn through the bare agents SDK, one run per step as devagent runs it (its own cost
   per call still grows with the conversation), and the ratio of devagent's own per-call cost
   (ours minus the SDK's) late vs early.

Each prints `ratio:` lines measured in the same run, the median [min-max] of the rounds. The
scripted server is the test suite's (tests/llm_stub.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from llm_stub import StubLLM, tool_call  # noqa: E402

from devagent.config import SANDBOX_IMAGE, sandbox_user  # noqa: E402


def run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)


def final_json(text: str) -> dict:
    """The run's summary: the whole output, or the last line of a JSON Lines stream."""
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(text.strip().splitlines()[-1])


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def summary(name: str, ours: list[float], floor: list[float], goal: float) -> None:
    mo, mf = statistics.median(ours), statistics.median(floor)
    print(f"{name}: devagent {mo * 1000:.0f} ms [{min(ours) * 1000:.0f}-{max(ours) * 1000:.0f}], "
          f"floor {mf * 1000:.0f} ms [{min(floor) * 1000:.0f}-{max(floor) * 1000:.0f}]")
    print(f"ratio: {mo / mf:.2f}  ({name}; goal <= {goal})")


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    for cmd in (["init", "-q", "-b", "main"], ["config", "user.email", "b@b"], ["config", "user.name", "b"]):
        run(["git", "-C", str(path), *cmd])
    (path / "Makefile").write_text("test:\n\t@echo ok\n")
    run(["git", "-C", str(path), "add", "."])
    run(["git", "-C", str(path), "commit", "-q", "-m", "x"])
    return path


def cleanup(home: Path) -> None:
    run([sys.executable, "-c", "import sys\nfrom devagent.sandbox import remove_thread_resources, connect\n"
         "from devagent.store import Store\nfrom pathlib import Path\n"
         "c = connect()\n[remove_thread_resources(c, t.id) for t in Store(Path(sys.argv[1])).threads()]",
         str(home)])


def first_screen_and_resume(rounds: int, tmp: Path, llm: StubLLM, parts: set[str]) -> None:
    uid, gid = sandbox_user()
    repo = make_repo(tmp / "repo")
    home = tmp / "home"
    env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-bench"}
    devagent = [sys.executable, "-m", "devagent"]
    new_ours, new_floor, res_ours, res_floor = [], [], [], []
    for n in range(rounds):
        llm.script({"tool_calls": [tool_call("run_shell", {"command": "true"}, f"c{n}")]}, {"content": "done"})
        result: dict = {}

        def task() -> None:
            out = run([*devagent, "task", "go", "--repo", str(repo), "--base-url", llm.url, "--model", "stub",
                       "--no-input", "--json"], env=env)
            if out.returncode != 3:
                raise SystemExit(f"devagent task exited {out.returncode}: {out.stderr.strip()[-300:]}")
            result["thread"] = final_json(out.stdout)["thread"]

        name = f"devagent-bench-{uuid.uuid4().hex[:8]}"

        def floor_new() -> None:
            run([sys.executable, "-c", "import agents"])
            run(["git", "clone", "-q", "--local", str(repo), str(tmp / name)])
            run(["docker", "run", "-d", "--name", name, "--network", "none", "-u", f"{uid}:{gid}",
                 SANDBOX_IMAGE, "sleep", "infinity"])

        def resume() -> None:
            run([*devagent, "approve", result["thread"], f"c{n}"], env=env)
            run([*devagent, "resume", result["thread"], "--no-input"], env=env)

        def floor_resume() -> None:
            run([sys.executable, "-c", "import agents"])
            run(["docker", "start", name])
            run(["docker", "exec", "-u", f"{uid}:{gid}", name, "true"])

        # Alternate which side goes first, so drift on the machine hits both alike.
        if n % 2:
            new_floor.append(timed(floor_new)), new_ours.append(timed(task))
        else:
            new_ours.append(timed(task)), new_floor.append(timed(floor_new))
        run(["docker", "stop", "-t", "0", name])
        if n % 2:
            res_floor.append(timed(floor_resume)), res_ours.append(timed(resume))
        else:
            res_ours.append(timed(resume)), res_floor.append(timed(floor_resume))
        run(["docker", "rm", "-f", name])
    cleanup(home)
    if "new" in parts:
        summary("new thread -> first approval screen", new_ours, new_floor, 1.5)
    if "resume" in parts:
        summary("approve + resume of one call", res_ours, res_floor, 1.3)


def long_turn(calls: int, tmp: Path, llm: StubLLM) -> None:
    from devagent.runner import Decision, TaskOptions, ThreadRunner
    from devagent.store import Store

    class AlwaysOnce:
        def decide(self, request):
            return Decision(True, always=True)

    repo = make_repo(tmp / "repo-long")
    home = tmp / "home-long"
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    llm.script(*[{"tool_calls": [tool_call("run_shell", {"command": "true"}, f"l{n}")]} for n in range(calls)],
               {"content": "done"})
    runner = ThreadRunner(Store(home), approver=AlwaysOnce())
    thread = runner.create_thread(repo, TaskOptions(model="stub", base_url=llm.url, max_steps=calls + 10))
    started = time.perf_counter()
    asyncio.run(runner.run_task(thread.id, "many commands"))
    total = time.perf_counter() - started
    executed = [e["at"] for e in runner.store.audit_log(thread.id) if e["event"] == "executed"]
    cleanup(home)
    if len(executed) < min(calls, 200):
        print(f"long turn: only {len(executed)} of {calls} calls ran")
        return
    early, late = early_and_late(executed)
    print(f"turn of {calls} calls: {total:.1f} s; per call: calls 10-20 {early * 1000:.0f} ms, "
          f"last 10 {late * 1000:.0f} ms")
    sdk_early, sdk_late = sdk_alone(calls, tmp, llm)
    print(f"the SDK alone, same scripted turn and in-memory approvals: calls 10-20 {sdk_early * 1000:.0f} ms, "
          f"last 10 {sdk_late * 1000:.0f} ms (ratio {sdk_late / sdk_early:.2f}); devagent's own per-call cost: "
          f"{(early - sdk_early) * 1000:.0f} ms early, {(late - sdk_late) * 1000:.0f} ms late")
    print(f"ratio: {late / early:.2f}  (per-call time, calls {calls - 10}-{calls} vs 10-20; goal <= 1.2)")
    print(f"ratio: {(late - sdk_late) / (early - sdk_early):.2f}  (devagent's own per-call cost beyond the SDK's, "
          f"calls {calls - 10}-{calls} vs 10-20; goal <= 1.2)")


def early_and_late(times: list[float]) -> tuple[float, float]:
    """Median time between consecutive calls: calls 10-20, and the last 10."""
    per_call = [b - a for a, b in zip(times, times[1:])]
    return statistics.median(per_call[9:19]), statistics.median(per_call[-11:-1])


def sdk_alone(calls: int, tmp: Path, llm: StubLLM) -> tuple[float, float]:
    """The floor of a long turn: the agents SDK by itself, with the same scripted server, a
    tool that needs approval, every call approved in memory, and a SQLite session; one run per
    model step, the next started from the session, as devagent runs a turn (in one run the
    SDK's own per-call cost grows with the run's items). It runs in a process of its own, as
    devagent's turn does."""
    llm.script(*[{"tool_calls": [tool_call("run_shell", {"command": "true"}, f"s{n}")]} for n in range(calls)],
               {"content": "done"})
    out = run([sys.executable, __file__, "--sdk-alone", llm.url, "--calls", str(calls)], cwd=tmp, check=True)
    early, late = map(float, out.stdout.split())
    return early, late


def sdk_turn(url: str, calls: int) -> None:
    """The bare SDK's scripted turn (see `sdk_alone`): prints its early and late per-call times."""
    from agents import Agent, RunConfig, Runner, SQLiteSession, function_tool
    from agents.agent import ToolsToFinalOutputResult

    from devagent.agent import ModelChoice

    ran: list[float] = []

    @function_tool(needs_approval=True)
    def run_shell(command: str) -> str:
        """Run a command."""
        ran.append(time.perf_counter())
        return "[exit code 0]\n"

    steps: list[bool] = []

    def step_end(_context, _results) -> ToolsToFinalOutputResult:
        steps.append(True)
        return ToolsToFinalOutputResult(is_final_output=True, final_output=None)

    agent = Agent(name="floor", instructions="run commands", tools=[run_shell],
                  model=ModelChoice("stub", url).build(), tool_use_behavior=step_end)
    session = SQLiteSession("floor", "floor-session.db")

    async def turn() -> None:
        run_input: object = "many commands"
        while True:
            steps.clear()
            result = Runner.run_streamed(agent, run_input, session=session, max_turns=calls + 10,
                                         run_config=RunConfig(tracing_disabled=True))
            async for _event in result.stream_events():
                pass
            if steps:  # a step is over: the next starts from the session
                run_input = []
                continue
            if not result.interruptions:
                return
            state = result.to_state()
            for item in result.interruptions:
                state.approve(item)
            run_input = state

    asyncio.run(turn())
    print(*early_and_late(ran))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sdk-alone", metavar="URL", help=argparse.SUPPRESS)  # the long turn's floor process
    # `resume` still makes each paused thread the way `new` measures, but prints only its own part.
    parser.add_argument("--only", choices=("new", "resume", "long"), help="Run (or report) just this part.")
    args = parser.parse_args()
    if args.sdk_alone:
        return sdk_turn(args.sdk_alone, args.calls)
    parts = {args.only} if args.only else {"new", "resume", "long"}
    llm = StubLLM()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if parts & {"new", "resume"}:
                first_screen_and_resume(args.rounds, Path(tmp), llm, parts)
            if "long" in parts:
                long_turn(args.calls, Path(tmp), llm)
    finally:
        llm.close()


if __name__ == "__main__":
    main()
