"""`devagent task` in-process: a scripted model drives the real runner, tools, container and git."""

from __future__ import annotations

import json

import pytest
from agents.testing import ScriptedModel, assistant_message, function_call

from devagent.runner import Decision, TaskOptions, ThreadRunner
from devagent.store import Store

from agent_helpers import ScriptedApprover, run_new_thread, tool_outputs

pytestmark = pytest.mark.usefixtures("sandbox_image")




async def test_edit_then_approved_command_runs_in_the_container_and_lands_on_the_branch(home, repo) -> None:
    approver = ScriptedApprover(Decision(True))
    steps = [
        [function_call("edit_file", {"path": "Makefile", "old": "tests pass", "new": "tests really pass"}, call_id="e1")],
        [function_call("run_shell", {"command": "make test > result.txt; id -u >> result.txt"}, call_id="s1")],
        [assistant_message("Makefile updated and tests run.")],
    ]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver, task="update the Makefile")
    assert outcome.status == "done" and outcome.final_output == "Makefile updated and tests run."
    # The screen saw the exact command and that the Makefile changed before `make` runs.
    [shown] = approver.shown
    assert shown.command == "make test > result.txt; id -u >> result.txt"
    assert shown.changed_files == ["M Makefile"]
    assert shown.network is False and shown.timeout_s == 300
    ws = runner.workspace(thread.id)
    assert (ws.work_dir / "result.txt").read_text().startswith("tests really pass\n")
    assert ws.git("log", "-1", "--format=%s").strip() == "update the Makefile"
    assert "result.txt" in ws.git("show", "--stat", "HEAD")
    assert outcome.commands_run == 1
    assert "exit code 0" in tool_outputs(model)["s1"]
    # The user's own checkout is untouched.
    assert not (repo / "result.txt").exists()


async def test_rejection_reason_reaches_the_model_and_nothing_runs(home, repo) -> None:
    approver = ScriptedApprover(Decision(False, "use the Makefile target instead"))
    steps = [
        [function_call("run_shell", {"command": "touch rejected.txt"}, call_id="s1")],
        [assistant_message("ok")],
    ]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)
    assert outcome.status == "done"
    assert "use the Makefile target instead" in tool_outputs(model)["s1"]
    assert not (runner.workspace(thread.id).work_dir / "rejected.txt").exists()
    events = [(e["event"], e["call_id"]) for e in runner.store.audit_log(thread.id)]
    assert ("rejected", "s1") in events and ("executed", "s1") not in events


async def test_approve_always_is_asked_once_for_identical_commands(home, repo) -> None:
    approver = ScriptedApprover(Decision(True, always=True), Decision(True))
    steps = [
        [function_call("run_shell", {"command": "echo x >> count.txt"}, call_id="s1")],
        [function_call("run_shell", {"command": "echo x >> count.txt"}, call_id="s2")],
        [function_call("run_shell", {"command": "echo y >> count.txt"}, call_id="s3")],
        [assistant_message("done")],
    ]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)
    assert outcome.status == "done"
    # Asked for s1 (answered "always"), not for the identical s2, and again for the different s3.
    assert [r.call_id for r in approver.shown] == ["s1", "s3"]
    assert (runner.workspace(thread.id).work_dir / "count.txt").read_text() == "x\nx\ny\n"
    by = {e["call_id"]: e["actor"] for e in runner.store.audit_log(thread.id) if e["event"] == "approved"}
    assert by == {"s1": "user", "s2": "rule (approve always)", "s3": "user"}


async def test_path_escapes_are_refused_with_an_error_the_model_reads(home, repo, tmp_path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    steps = [
        [
            function_call("read_file", {"path": "../outside.txt"}, call_id="r1"),
            function_call("read_file", {"path": str(outside)}, call_id="r2"),
            function_call("write_file", {"path": "../../evil.txt", "content": "x"}, call_id="w1"),
            function_call("read_file", {"path": ".git/config"}, call_id="r3"),
        ],
        [assistant_message("could not")],
    ]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, ScriptedApprover())
    outputs = tool_outputs(model)
    assert "outside the workspace" in outputs["r1"]
    assert "absolute paths are not allowed" in outputs["r2"]
    assert "outside the workspace" in outputs["w1"]
    assert "off limits" in outputs["r3"]
    assert "secret" not in json.dumps(outputs)
    assert not (tmp_path / "evil.txt").exists()


async def test_file_tools_and_tool_errors_never_crash_the_run(home, repo) -> None:
    steps = [
        [function_call("write_file", {"path": "src/app.py", "content": "print('hi')\n"}, call_id="w1")],
        [
            function_call("read_file", {"path": "src/app.py"}, call_id="r1"),
            function_call("list_files", {"pattern": "*.py"}, call_id="l1"),
            function_call("search", {"pattern": "print\\("}, call_id="g1"),
            function_call("edit_file", {"path": "src/app.py", "old": "nope", "new": "x"}, call_id="e1"),
            function_call("read_file", '{"path": "unterminated', call_id="bad"),
            function_call("no_such_tool", {}, call_id="u1"),
        ],
        [assistant_message("done")],
    ]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, ScriptedApprover())
    assert outcome.status == "done"
    outputs = tool_outputs(model)
    assert outputs["r1"] == "print('hi')\n"
    assert outputs["l1"] == "src/app.py"
    assert outputs["g1"] == "src/app.py:1: print('hi')"
    assert "not found" in outputs["e1"]
    assert "Invalid JSON" in outputs["bad"]
    assert "not found" in outputs["u1"]


async def test_conversation_is_remembered_across_turns_of_a_thread(home, repo) -> None:
    model = ScriptedModel([[assistant_message("first answer")], [assistant_message("second answer")]])
    runner = ThreadRunner(Store(home), model=model, approver=ScriptedApprover())
    thread = runner.create_thread(repo, TaskOptions())
    await runner.run_task(thread.id, "remember the word pelican")
    await runner.run_task(thread.id, "what was the word?")
    second_input = json.dumps(model.calls[-1].input)
    assert "remember the word pelican" in second_input and "first answer" in second_input


async def test_commands_of_one_model_turn_do_not_kill_each_other(home, repo) -> None:
    # The SDK runs the calls of one turn in parallel; each command's clean-up must not stop the other.
    approver = ScriptedApprover(Decision(True), Decision(True))
    steps = [
        [
            function_call("run_shell", {"command": "sleep 2; echo first > first.txt"}, call_id="s1"),
            function_call("run_shell", {"command": "sleep 1; echo second > second.txt"}, call_id="s2"),
        ],
        [assistant_message("both done")],
    ]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)
    work = runner.workspace(thread.id).work_dir
    assert (work / "first.txt").read_text() == "first\n"
    assert (work / "second.txt").read_text() == "second\n"
    outputs = tool_outputs(model)
    assert "exit code 0" in outputs["s1"] and "exit code 0" in outputs["s2"]


async def test_a_catastrophic_search_pattern_cannot_hang_the_turn(home, repo) -> None:
    steps = [
        [function_call("write_file", {"path": "big.txt", "content": "a" * 4000 + "!\n"}, call_id="w1")],
        [function_call("search", {"pattern": "(a+)+$"}, call_id="g1")],
        [assistant_message("done")],
    ]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, ScriptedApprover())
    assert outcome.status == "done"
    assert "search stopped after" in tool_outputs(model)["g1"]


async def test_the_timeout_that_runs_is_the_one_shown(home, repo) -> None:
    approver = ScriptedApprover(Decision(True), Decision(True))
    steps = [
        [function_call("run_shell", {"command": "echo a", "timeout_s": 99999}, call_id="s1")],
        [function_call("run_shell", {"command": "touch lenient.txt", "timeout_s": "5"}, call_id="s2")],
        [assistant_message("done")],
    ]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)
    assert approver.shown[0].timeout_s == 3600  # capped, and shown capped
    assert len(approver.shown) == 1  # "5" cannot run as shown: refused without asking
    assert "positive whole number" in tool_outputs(model)["s2"] and "Nothing ran" in tool_outputs(model)["s2"]
    assert not (runner.workspace(thread.id).work_dir / "lenient.txt").exists()


async def test_after_a_model_error_resume_never_runs_a_call_twice_and_keeps_its_result(home, repo) -> None:
    import openai

    from devagent.errors import DevagentError

    try:  # the HTTP client openai is built on (httpx2 from openai 3)
        import httpx2 as http
    except ImportError:
        import httpx as http

    # the provider went away mid-turn
    broken = openai.APIConnectionError(request=http.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))
    steps = [[function_call("run_shell", {"command": "echo ran >> ran.txt; echo marker-$((6*7))"}, call_id="s1")], broken]
    model = ScriptedModel(steps)
    runner = ThreadRunner(Store(home), model=model, approver=ScriptedApprover(Decision(True)))
    thread = runner.create_thread(repo, TaskOptions())
    with pytest.raises(DevagentError, match="model API error"):
        await runner.run_task(thread.id, "do it")

    again = ScriptedModel([[assistant_message("recovered")]])
    resumed = await ThreadRunner(Store(home), model=again, approver=ScriptedApprover()).resume(thread.id)
    assert resumed.status == "done"
    assert (runner.workspace(thread.id).work_dir / "ran.txt").read_text() == "ran\n"  # ran exactly once
    # The step that ran s1 was over when the model failed: the conversation holds s1's own result.
    kept = tool_outputs(again)["s1"]
    assert "marker-42" in kept and "[exit code 0" in kept


async def test_files_the_tools_write_belong_to_the_sandbox_user(home, repo) -> None:
    # devagent may run as root; what its file tools create must stay writable inside the sandbox.
    from devagent.config import sandbox_user

    steps = [
        [function_call("write_file", {"path": "deep/new/dir/notes.txt", "content": "one\n"}, call_id="w1")],
        [function_call("run_shell", {"command": "echo two >> deep/new/dir/notes.txt && mkdir deep/new/dir/sub"},
                       call_id="s1")],
        [assistant_message("done")],
    ]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, ScriptedApprover(Decision(True)))
    assert "exit code 0" in tool_outputs(model)["s1"]
    work = runner.workspace(thread.id).work_dir
    assert (work / "deep/new/dir/notes.txt").read_text() == "one\ntwo\n"
    uid = sandbox_user()[0]
    for path in ("deep", "deep/new", "deep/new/dir", "deep/new/dir/notes.txt"):
        assert (work / path).stat().st_uid == uid, path


async def test_a_call_decided_in_this_process_continues_from_memory_after_the_pause_is_saved(
        home, repo, monkeypatch) -> None:
    """The pause is written before anyone decides (so a killed process loses nothing), but the
    process that decided goes on from what it holds: the saved run is never parsed back (a saved
    run spoiled in the meantime changes nothing). Both ways of deciding: the human at the screen,
    and an "approve always" rule."""
    from agents import RunState

    from devagent.runner import SilentEvents

    restored: list[int] = []
    real_from_string = RunState.from_string

    async def counting_from_string(*args, **kwargs):
        restored.append(1)
        return await real_from_string(*args, **kwargs)

    monkeypatch.setattr(RunState, "from_string", counting_from_string)

    saved: list[tuple[str, bool]] = []

    def spoil_saved_run(call_id: str) -> None:
        store = Store(home)  # another connection, as another process would see it
        [thread] = store.threads()
        task, blob = store.run(thread.id)
        saved.append((call_id, call_id in (blob or "")))
        with store.tx() as db:
            db.execute("UPDATE runs SET state_blob='{not json' WHERE thread_id=?", (thread.id,))
        store.close()

    class Spoiler(ScriptedApprover):
        def decide(self, request):
            spoil_saved_run(request.call_id)
            return super().decide(request)

    class RuleEvents(SilentEvents):
        def approved_by_rule(self, call_id: str, tool: str, arguments: str) -> None:
            spoil_saved_run(call_id)

    steps = [
        [function_call("run_shell", {"command": "echo x >> count.txt"}, call_id="s1")],
        [function_call("run_shell", {"command": "echo x >> count.txt"}, call_id="s2")],
        [assistant_message("done")],
    ]
    model = ScriptedModel(steps)
    runner = ThreadRunner(Store(home), model=model, approver=Spoiler(Decision(True, always=True)), events=RuleEvents())
    thread = runner.create_thread(repo, TaskOptions())
    outcome = await runner.run_task(thread.id, "count")
    assert outcome.status == "done" and outcome.commands_run == 2
    assert saved == [("s1", True), ("s2", True)]  # each pause was saved, holding its call, before the decision
    assert restored == []
    assert (runner.workspace(thread.id).work_dir / "count.txt").read_text() == "x\nx\n"
    assert "exit code 0" in tool_outputs(model)["s2"]
    assert runner.store.run(thread.id) is None  # the finished turn leaves no saved run


async def test_the_container_starts_while_the_screen_waits_and_is_stopped_after_the_turn(
        home, repo, docker_client) -> None:
    """Nothing has run yet when the first screen shows, but the container is already on its way
    up, so an approved command does not wait for it. A run that can only pause starts nothing."""
    import time

    import docker

    from devagent.runner import NoApprover

    def running(name: str) -> bool | None:
        try:
            return docker_client.api.inspect_container(name)["State"]["Running"]
        except docker.errors.NotFound:
            return None

    seen: list[bool | None] = []

    class Watcher(ScriptedApprover):
        def decide(self, request):
            name = f"devagent-{request.thread_id}"
            deadline = time.monotonic() + 60
            while not running(name) and time.monotonic() < deadline:
                time.sleep(0.05)
            seen.append(running(name))
            return super().decide(request)

    steps = [[function_call("run_shell", {"command": "echo hi"}, call_id="s1")], [assistant_message("done")]]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, Watcher(Decision(True)))
    assert outcome.status == "done" and seen == [True]
    assert running(f"devagent-{thread.id}") is False  # stopped (kept) after the turn

    paused_steps = [[function_call("run_shell", {"command": "echo hi"}, call_id="p1")], [assistant_message("done")]]
    runner, model, thread, outcome = await run_new_thread(home, repo, paused_steps, NoApprover())  # --no-input
    assert outcome.status == "paused"
    assert running(f"devagent-{thread.id}") is None  # never created: nothing could run


async def test_the_step_budget_counts_every_step_of_the_turn_across_pauses_and_processes(home, repo) -> None:
    """Each step of a turn is a run of its own: the budget (--max-steps) is the turn's all the same,
    through a pause and a resume in another process."""
    from devagent.errors import DevagentError

    def step(n: int) -> list:
        return [function_call("run_shell", {"command": f"echo step-{n}"}, call_id=f"s{n}")]

    runner, first, thread, paused = await run_new_thread(home, repo, [step(1)], ScriptedApprover(),
                                                         options=TaskOptions(max_steps=3))
    assert paused.status == "paused" and [p.call_id for p in paused.pending] == ["s1"]
    rest = ScriptedModel([step(2), step(3), step(4), [assistant_message("never reached")]])
    again = ThreadRunner(Store(home), model=rest, approver=ScriptedApprover(then=Decision(True)))
    assert again.store.decide(thread.id, "s1", "approved", actor="user")
    with pytest.raises(DevagentError, match="used its 3 steps"):
        await again.resume(thread.id)
    assert len(first.calls) + len(rest.calls) == 3  # the model was asked for three steps in all
    ran = [e["call_id"] for e in again.store.audit_log(thread.id) if e["event"] == "executed"]
    assert ran == ["s1", "s2", "s3"]


async def test_after_ctrl_c_a_step_that_ends_anyway_goes_no_further(home, repo) -> None:
    """Ctrl-C kills the running command; should the step still end (the SDK lets a tool it is
    running finish), the turn goes no further: the model is not asked again and the pause is kept,
    so resume asks for the killed call again."""
    import asyncio
    import threading
    import time

    model = ScriptedModel([[function_call("run_shell", {"command": "sleep 20"}, call_id="s1")],
                           [assistant_message("went on")]])
    runner = ThreadRunner(Store(home), model=model, approver=ScriptedApprover(Decision(True)))
    thread = runner.create_thread(repo, TaskOptions())

    def ctrl_c_once_it_runs() -> None:  # what the CLI's Ctrl-C handler does first
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if runner.store.call_events(thread.id, "s1", "executing"):
                time.sleep(0.5)
                runner.abort()
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=ctrl_c_once_it_runs)
    watcher.start()
    try:
        with pytest.raises(asyncio.CancelledError):
            await runner.run_task(thread.id, "do it")
    finally:
        watcher.join()
    assert len(model.calls) == 1  # not asked again after the killed command
    assert runner.store.run(thread.id)[1] is not None  # the pause is kept
    again = ThreadRunner(Store(home), model=ScriptedModel([[assistant_message("done")]]), approver=ScriptedApprover())
    outcome = await again.resume(thread.id)
    assert outcome.status == "paused" and [p.call_id for p in outcome.pending] == ["s1"]
