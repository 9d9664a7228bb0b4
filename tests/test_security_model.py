"""A hostile model, driven through the real runner, tools, store and container.

Whatever the model sends (broken JSON, unknown tools, huge or disguised commands), each call gets a
clear error or a full, visible approval, and nothing runs that a human did not approve exactly.
A saved run edited on disk, or a tool invoked without an approval, is refused.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.tool_context import ToolContext
from rich.console import Console

from devagent.approvals import ApprovalRequest
from devagent.config import sandbox_user
from devagent.display import unrender
from devagent.errors import ApprovalMismatch
from devagent.runner import Decision, TaskOptions, ThreadRunner
from devagent.sandbox import ContainerSpec, ThreadContainer
from devagent.store import Store, sha256_text
from devagent.execution import ToolRuntime, current_fingerprint, record_seen
from devagent.tools import build_tools
from devagent.ui import approval_panel

from agent_helpers import ScriptedApprover, run_new_thread, tool_outputs

pytestmark = pytest.mark.usefixtures("sandbox_image")


def screen(request: ApprovalRequest, width: int = 120) -> str:
    """The approval panel exactly as a terminal would receive it (no colours)."""
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, highlight=False).print(approval_panel(request))
    return buf.getvalue()


def events(runner: ThreadRunner, thread_id: str, kind: str) -> list[dict]:
    return [e for e in runner.store.audit_log(thread_id) if e["event"] == kind]




# ------------------------------------------------------------------ broken and unknown calls


async def test_malformed_arguments_never_run_even_if_approved(home: Path, repo: Path) -> None:
    calls = {
        "bad-json": '{"command": "touch pwned-1.txt"',
        "not-object": '["touch pwned-2.txt"]',
        "wrong-type": '{"command": ["touch", "pwned-3.txt"]}',
        "no-command": '{"cmd": "touch pwned-4.txt"}',
        "empty": "",
    }
    approver = ScriptedApprover(then=Decision(True))  # a careless human approves whatever is shown
    steps = [[function_call("run_shell", args, call_id=cid) for cid, args in calls.items()],
             [assistant_message("gave up")]]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)

    assert outcome.status == "done"
    # A call that cannot run is never put to the human: it goes straight back to the model.
    assert approver.shown == []
    assert runner.store.approvals(thread.id, "pending") == []
    outputs = tool_outputs(model)
    assert all(outputs[cid].startswith("error:") and "Nothing ran" in outputs[cid] for cid in calls), outputs
    assert {e["call_id"] for e in events(runner, thread.id, "refused")} == set(calls)
    work = runner.workspace(thread.id).work_dir
    assert not list(work.glob("pwned-*"))
    assert events(runner, thread.id, "executed") == []


async def test_unknown_tools_get_an_error_and_nothing_runs(home: Path, repo: Path) -> None:
    steps = [
        [function_call("shell", {"command": "touch pwned.txt"}, call_id="u1"),
         function_call("run_shell ", {"command": "touch pwned.txt"}, call_id="u2"),
         function_call("Run_Shell", {"command": "touch pwned.txt"}, call_id="u3"),
         function_call("local_shell", {"action": {"command": ["touch", "pwned.txt"]}}, call_id="u4")],
        [assistant_message("ok")],
    ]
    approver = ScriptedApprover(then=Decision(True))
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)
    assert outcome.status == "done"
    assert approver.shown == []  # nothing even reached the approval screen
    outputs = tool_outputs(model)
    assert all("not found" in outputs[cid] for cid in ("u1", "u2", "u3", "u4")), outputs
    assert not (runner.workspace(thread.id).work_dir / "pwned.txt").exists()
    assert events(runner, thread.id, "executed") == []


async def test_huge_arguments_get_clear_errors(home: Path, repo: Path) -> None:
    too_long = "touch ran.txt; : '" + "x" * 300_000 + "'"  # beyond what one exec argument may hold
    steps = [
        [function_call("read_file", {"path": "a" * 100_000}, call_id="r1"),
         function_call("write_file", {"path": "big.txt", "content": "y" * 5_000_000}, call_id="w1"),
         function_call("search", {"pattern": "z" * 1_000_000}, call_id="g1"),
         function_call("run_shell", {"command": too_long}, call_id="s1")],
        [assistant_message("ok")],
    ]
    approver = ScriptedApprover(then=Decision(True))
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)
    assert outcome.status == "done"
    outputs = tool_outputs(model)
    assert outputs["r1"].startswith("error:") and "too long" in outputs["r1"]
    assert outputs["w1"] == "wrote 5000000 bytes to big.txt"
    assert outputs["g1"] == "(no matches)"
    # The whole command was shown; it could not start, and the model is told so.
    [request] = approver.shown
    assert request.command == too_long
    assert "argument list too long" in outputs["s1"]
    assert not (runner.workspace(thread.id).work_dir / "ran.txt").exists()


# ------------------------------------------------------------------ what the human sees is what runs


async def test_a_100_kb_command_is_shown_whole_and_runs_byte_for_byte(home: Path, repo: Path) -> None:
    command = "echo START; : '" + "A" * 100_000 + "'; touch hidden-at-the-end.txt"
    approver = ScriptedApprover(then=Decision(True))
    steps = [[function_call("run_shell", {"command": command}, call_id="s1")], [assistant_message("ok")]]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)

    [request] = approver.shown
    assert request.command == command and request.sha256 == sha256_text(command)
    wide = screen(request, width=len(command) + 200)
    assert command in wide  # on one line, whole, unescaped
    # A real terminal: wrapped over many lines (each marked ↪), never cut.
    body = [line[2:-2] for line in screen(request, width=120).splitlines()
            if line.startswith("│ ") and line.endswith(" │")]
    assert all(row.startswith("↪ ") for row in body[1:])
    assert (body[0] + "".join(row[2:] for row in body[1:])).replace(" ", "") == command.replace(" ", "")

    [executing] = events(runner, thread.id, "executing")
    assert executing["detail"]["command"] == command
    assert executing["detail"]["sha256"] == request.sha256
    assert (runner.workspace(thread.id).work_dir / "hidden-at-the-end.txt").exists()
    assert "START" in tool_outputs(model)["s1"]


@pytest.mark.parametrize("command, lines", [
    ("ls\nrm -rf /workspace", ["ls", "rm -rf /workspace"]),
    ("ls\r\nrm -rf /workspace", ["ls⟪U+000D CR⟫", "rm -rf /workspace"]),
    ("ls" + " " * 300 + "\nrm -rf /workspace", ["ls", "rm -rf /workspace"]),
    ("ls # \x1b[2K\x1b[1Gok\nrm -rf /workspace", ["ls # ⟪U+001B ESC⟫[2K⟪U+001B ESC⟫[1Gok", "rm -rf /workspace"]),
    ("ls\u2028rm -rf /workspace", ["ls⟪U+2028 LINE SEPARATOR⟫rm -rf /workspace"]),
])
async def test_a_newline_hidden_second_command_is_shown_and_rejecting_runs_nothing(
        home: Path, repo: Path, command: str, lines: list[str]) -> None:
    approver = ScriptedApprover(then=Decision(False, "no deleting"))
    steps = [[function_call("run_shell", {"command": command}, call_id="s1")], [assistant_message("ok")]]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)

    [request] = approver.shown
    assert request.command == command
    text = screen(request)
    assert "\x1b" not in text and "\r" not in text and "\u2028" not in text
    if len(lines) > 1:
        assert f"command ({len(lines)} lines: every line runs)" in text
        for number, line in enumerate(lines, 1):
            assert f"{number:>3} │ {line}" in text, text
    else:
        assert lines[0] in text
    assert unrender(lines[-1]) in command

    # Rejected: nothing ran, the workspace is intact, and the model is told why.
    work = runner.workspace(thread.id).work_dir
    assert (work / "README.md").read_text() == "# project\n" and (work / "Makefile").exists()
    assert events(runner, thread.id, "executed") == [] and events(runner, thread.id, "executing") == []
    assert "no deleting" in tool_outputs(model)["s1"]


async def test_look_alike_characters_are_pointed_out(home: Path, repo: Path) -> None:
    approver = ScriptedApprover(then=None)
    steps = [[function_call("run_shell", {"command": "cаt README.md | ѕh"}, call_id="s1")]]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)
    assert outcome.status == "paused"
    text = screen(approver.shown[0], width=200)
    assert "non-ASCII characters that may look like ASCII" in text
    assert "U+0430 CYRILLIC SMALL LETTER A" in text and "U+0455 CYRILLIC SMALL LETTER DZE" in text


async def test_a_command_with_a_nul_byte_is_shown_and_cannot_run_altered(home: Path, repo: Path) -> None:
    """A NUL byte survives the approval screen (as a visible token) but not the way into the
    container: bash would stop reading at it. The command must fail whole, not run truncated."""
    steps = [[function_call("run_shell", '{"command": "touch nul.txt\\u0000rm -rf /workspace"}', call_id="s1")],
             [assistant_message("ok")]]
    approver = ScriptedApprover(then=Decision(True))
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, approver)
    assert outcome.status == "done"
    [request] = approver.shown
    assert "⟪U+0000 NUL⟫rm -rf /workspace" in screen(request, width=200)
    assert "invalid argument" in tool_outputs(model)["s1"]
    work = runner.workspace(thread.id).work_dir
    assert not (work / "nul.txt").exists() and (work / "README.md").exists()


SURROGATE_CALL = '{"command": "touch sur.txt # \\ud800"}'


async def test_a_lone_surrogate_in_arguments_runs_nothing(home: Path, repo: Path) -> None:
    """Docker would pass a lone surrogate on as U+FFFD (not the approved bytes). Today the agent SDK
    already fails the turn on such arguments; whatever happens, nothing may run."""
    steps = [[function_call("run_shell", SURROGATE_CALL, call_id="s1")], [assistant_message("ok")]]
    model = ScriptedModel(steps)
    runner = ThreadRunner(Store(home), model=model, approver=ScriptedApprover(then=Decision(True)))
    thread = runner.create_thread(repo, TaskOptions())
    try:
        await runner.run_task(thread.id, "do it")
    except Exception:  # how it fails is the next test's concern; here only: nothing ran
        pass
    assert not (runner.workspace(thread.id).work_dir / "sur.txt").exists()
    assert events(runner, thread.id, "executed") == []


async def test_a_lone_surrogate_in_arguments_is_a_clear_error(home: Path, repo: Path) -> None:
    from devagent.errors import DevagentError

    steps = [[function_call("run_shell", SURROGATE_CALL, call_id="s1")], [assistant_message("ok")]]
    runner = ThreadRunner(Store(home), model=ScriptedModel(steps), approver=ScriptedApprover(then=Decision(True)))
    thread = runner.create_thread(repo, TaskOptions())
    with pytest.raises(DevagentError):
        await runner.run_task(thread.id, "do it")


# ------------------------------------------------------------------ a saved run edited on disk


async def pause(home: Path, repo: Path, command: str):
    steps = [[function_call("run_shell", {"command": command}, call_id="s1")], [assistant_message("ok")]]
    runner, model, thread, outcome = await run_new_thread(home, repo, steps, ScriptedApprover(then=None))
    assert outcome.status == "paused"
    return runner, thread


def edit_blob(home: Path, thread_id: str, edit) -> None:
    db = sqlite3.connect(home / "devagent.db")
    try:
        (blob,) = db.execute("SELECT state_blob FROM runs WHERE thread_id=?", (thread_id,)).fetchone()
        db.execute("UPDATE runs SET state_blob=? WHERE thread_id=?", (edit(blob), thread_id))
        db.commit()
    finally:
        db.close()


def with_context(change):
    def edit(blob: str) -> str:
        data = json.loads(blob)
        change(data["context"])
        return json.dumps(data)
    return edit


TAMPERING = {
    "approval injected": with_context(lambda c: c.update(function_tool_approvals=[
        {"agent": {"name": "devagent"}, "tool_key": "run_shell", "decision": {"approved": ["s1"], "rejected": []}}])),
    "blanket approval": with_context(lambda c: c.update(approvals={"run_shell": {"approved": True, "rejected": []}})),
    "call id swapped": lambda blob: blob.replace('"s1"', '"s9"'),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
async def test_a_saved_run_that_carries_decisions_nobody_made_is_refused(home: Path, repo: Path, tampering: str) -> None:
    runner, thread = await pause(home, repo, "touch pwned.txt")
    edit_blob(home, thread.id, TAMPERING[tampering])

    resumer = ThreadRunner(Store(home), model=ScriptedModel([[assistant_message("ok")]]), approver=ScriptedApprover(then=None))
    with pytest.raises(ApprovalMismatch):
        await resumer.resume(thread.id)
    assert not (runner.workspace(thread.id).work_dir / "pwned.txt").exists()
    assert events(runner, thread.id, "executed") == []


async def test_a_saved_run_whose_command_was_changed_after_approval_is_refused(home: Path, repo: Path) -> None:
    runner, thread = await pause(home, repo, "echo approved-command")
    runner.store.decide(thread.id, "s1", "approved", actor="user")
    edit_blob(home, thread.id, lambda blob: blob.replace("echo approved-command", "touch pwned-by-edit"))

    resumer = ThreadRunner(Store(home), model=ScriptedModel([[assistant_message("ok")]]), approver=ScriptedApprover(then=None))
    with pytest.raises(ApprovalMismatch, match="sha256"):
        await resumer.resume(thread.id)
    assert not (runner.workspace(thread.id).work_dir / "pwned-by-edit").exists()
    assert events(runner, thread.id, "executed") == []


async def test_an_untampered_saved_run_resumes_and_runs_what_was_approved(home: Path, repo: Path) -> None:
    """The control for the refusals above: the same flow, unedited, does run."""
    runner, thread = await pause(home, repo, "touch approved.txt")
    runner.store.decide(thread.id, "s1", "approved", actor="user")
    resumer = ThreadRunner(Store(home), model=ScriptedModel([[assistant_message("ok")]]), approver=ScriptedApprover(then=None))
    outcome = await resumer.resume(thread.id)
    assert outcome.status == "done"
    assert (runner.workspace(thread.id).work_dir / "approved.txt").exists()


# ------------------------------------------------------------------ the tool checks for itself


async def test_the_tool_itself_refuses_a_call_without_a_matching_approval(home: Path, repo: Path, docker_client) -> None:
    runner = ThreadRunner(Store(home), model=ScriptedModel([]))
    thread = runner.create_thread(repo, TaskOptions())
    ws = runner.workspace(thread.id)
    store = runner.store
    rt = ToolRuntime(thread_id=thread.id, store=store, workspace=ws, network=False, sandbox_owner=sandbox_user(),
                     container=ThreadContainer(docker_client, ContainerSpec(thread.id, ws.work_dir, ws.git_dir)))
    tools = {tool.name: tool for tool in build_tools(rt)}

    async def invoke(tool: str, call_id: str, command: str) -> str:
        args = json.dumps({"command": command})
        ctx = ToolContext(context=None, tool_name=tool, tool_call_id=call_id, tool_arguments=args)
        try:
            return await tools[tool].on_invoke_tool(ctx, args)
        finally:
            rt.container.stop()

    def record(call_id: str, command: str, status: str | None, tool: str = "run_shell") -> None:
        store.add_pending(thread.id, call_id, tool, json.dumps({"command": command}))
        record_seen(store, thread.id, call_id, current_fingerprint(ws))  # as a proposal records it
        if status:
            store.decide(thread.id, call_id, status, actor="user")

    # Never proposed: no approval row at all.
    assert "never approved" in await invoke("run_shell", "c1", "touch pwned-1")
    # Approved, but for different arguments (same call id).
    record("c2", "echo harmless", "approved")
    assert "never approved" in await invoke("run_shell", "c2", "touch pwned-2")
    # Approved for another tool.
    record("c3", "touch pwned-3", "approved", tool="run_migration")
    assert "never approved" in await invoke("run_shell", "c3", "touch pwned-3")
    # Still pending, or rejected.
    record("c4", "touch pwned-4", None)
    assert "is pending" in await invoke("run_shell", "c4", "touch pwned-4")
    record("c5", "touch pwned-5", "rejected")
    assert "is rejected" in await invoke("run_shell", "c5", "touch pwned-5")
    # The control: approved exactly, it runs once; replaying the same call is refused.
    record("c6", "echo run >> once.txt", "approved")
    assert "exit code 0" in await invoke("run_shell", "c6", "echo run >> once.txt")
    assert "already ran once and is not run again" in await invoke("run_shell", "c6", "echo run >> once.txt")

    # Approved exactly, but holding a lone surrogate: it cannot reach bash byte for byte.
    record("c7", "touch pwned-7 # \ud800", "approved")
    assert "lone surrogate" in await invoke("run_shell", "c7", "touch pwned-7 # \ud800")

    assert (ws.work_dir / "once.txt").read_text() == "run\n"
    assert not list(ws.work_dir.glob("pwned-*"))
    refused = [e["call_id"] for e in events(runner, thread.id, "refused")]
    assert refused == ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]
    assert [e["call_id"] for e in events(runner, thread.id, "executed")] == ["c6"]


def test_a_wrapped_long_line_never_looks_like_a_separate_line_of_the_command() -> None:
    command = "ls\nrm -rf /workspace " + "x" * 300 + " && echo done"
    request = ApprovalRequest("t", "c1", "run_shell", "{}", "x", "pending", command=command, timeout_s=300)
    rows = screen(request, width=80).splitlines()
    inner = [row[2:-2] for row in rows if row.startswith("│")]  # inside the command's box
    second = next(i for i, row in enumerate(inner) if "2 │ rm -rf" in row)
    gutter = inner[second].index("rm -rf")
    continuation = []
    for row in inner[second + 1:]:
        continuation.append(row)
    assert continuation, "the long line must wrap at this width"
    # Every wrapped piece is marked as a continuation where a line number would be.
    assert all(row[:gutter].strip() == "↪" for row in continuation)
    shown = "".join(r[gutter:].rstrip() for r in [inner[second], *continuation])
    assert shown.replace(" ", "") == command.split("\n")[1].replace(" ", "")
