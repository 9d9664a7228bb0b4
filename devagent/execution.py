"""Running approved calls: who may run, the run itself, and what it is recorded as.

`ToolRuntime` is everything the tools of one thread act on. A call runs only when the store holds
a decision for its exact arguments (`authorize`), and, for SQL that destroys data, the typed names
of what it destroys; it starts only from the workspace state its approval was given on. Nothing
here imports the agents SDK, so the commands that only show or decide calls (`pending`,
`approve`) start fast; `devagent.tools` wraps these for the model.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devagent.words import count
from devagent.decisions import confirmation_words, same_words  # re-exported: the one place they live
from devagent.errors import DevagentError
from devagent.paths import WorkspacePaths
from devagent.store import Approval, Heartbeat, Store, Thread, sha256_text
from devagent.workspace import LAST_COMMAND, FileChange, ThreadWorkspace, quote_path

if TYPE_CHECKING:
    from devagent.sandbox import ThreadContainer
    from devagent.approvals import ApprovalRequest
    from agents.tool_context import ToolContext


@dataclass
class ToolRuntime:
    """Everything the tools of one thread act on."""

    thread_id: str
    store: Store
    workspace: ThreadWorkspace
    container: ThreadContainer
    network: bool
    sandbox_owner: tuple[int, int]
    on_output: Callable[[str], None] = lambda _text: None
    on_activity: Callable[[str | None], None] = lambda _what: None
    # (call id, command) of an approved command about to start: its streamed output is labelled.
    on_command: Callable[[str, str], None] = lambda _call_id, _command: None
    # Set by the migrations part: runs approved SQL in the thread's database.
    migrate: Callable[..., str] | None = None
    started: bool = field(default=False, init=False)
    aborted: bool = field(default=False, init=False)  # set by Ctrl-C: results are not trusted
    git_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    # Commands and migrations run one at a time, each from a known state of the workspace (the
    # runner has the SDK run the calls of one model turn one after another; this holds however
    # the tools are called).
    exec_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    # (tool, call id) of the function calls of the model's last response, in its order: a file
    # tool call after an approval-gated one does not run (devagent.tools.in_order).
    response_calls: list[tuple[str, str]] = field(default_factory=list, init=False)
    # (fingerprint before, fingerprint after) of every command this process ran, in order.
    transitions: list[tuple[str, str]] = field(default_factory=list, init=False)
    halted_at: float | None = field(default=None, init=False)  # when a call found the workspace changed
    _starting: threading.Thread | None = field(default=None, init=False)  # a start in the background

    @property
    def paths(self) -> WorkspacePaths:
        # Files the host writes as root must stay writable by the sandbox's uid.
        return WorkspacePaths(self.workspace.work_dir, owner=self.sandbox_owner if os.getuid() == 0 else None)

    def ensure_container(self) -> ThreadContainer:
        if not self.started:
            with self.doing("starting PostgreSQL and the sandbox" if self.container.spec.internal_network
                            else "starting the sandbox"):
                self.settle()
                if not self.started:  # not started in the background (or that failed): say why now
                    self.container.ensure_running()
            self.started = True
        return self.container

    def start_in_background(self) -> None:
        """Start the container (and a database sidecar) while the model thinks, so the first
        approved command finds it running. A failure here is left for that command to report."""
        if self.started or self._starting is not None:
            return

        def start() -> None:
            try:
                self.container.ensure_running()
                self.started = True
            except Exception:  # noqa: BLE001 - ensure_container tries again and says what is wrong
                pass

        self._starting = threading.Thread(target=start, name="devagent-sandbox-start", daemon=True)
        self._starting.start()

    def settle(self) -> None:
        """Wait for a start in the background to end (before the container is used or stopped)."""
        if self._starting is not None:
            self._starting.join()

    @contextmanager
    def doing(self, what: str) -> Iterator[None]:
        """Tell whoever watches what is going on (a status line), for as long as it lasts."""
        self.on_activity(what)
        try:
            yield
        finally:
            self.on_activity(None)

    def authorize(self, ctx: ToolContext, tool: str) -> str | None:
        """None if this exact call was approved; otherwise the refusal the model reads."""
        row = self.store.approval(self.thread_id, ctx.tool_call_id)
        digest = sha256_text(ctx.tool_arguments)
        if row is None or row.tool != tool or row.sha256 != digest:
            return f"refused: this {tool} call was never approved by a human; nothing ran"
        if row.status == "done":
            # Replaying a saved run after a crash: the call ran already; give back what it said.
            recorded = [e["detail"].get("output")
                        for e in self.store.call_events(self.thread_id, ctx.tool_call_id, "executed")]
            if recorded and recorded[-1]:
                return f"[this call already ran once and is not run again; its result was:]\n{recorded[-1]}"
            return "refused: this call was already executed once; propose it again to re-run it"
        if row.status != "approved":
            return f"refused: this call is {row.status}, not approved; nothing ran"
        return None

    def confirmation_refusal(self, call_id: str, sql: str, dialect: str, probe: dict | None = None) -> str | None:
        """None unless `sql` (exactly what is about to run) destroys data and the approval of this
        call lacks a human's typed confirmation of exactly the names it destroys. No rule, and no
        approval given for other SQL, stands in for that confirmation. `probe`: what was read from
        the database for the screen (row counts, columns), so the names are the screen's."""
        required = confirmation_words(sql, dialect, probe)
        if not required:
            return None
        row = self.store.approval(self.thread_id, call_id)
        if row is not None and row.status == "approved" and same_words(row.confirmed, required):
            return None
        return (f"this SQL destroys data ({', '.join(required)}) and runs only after a human types "
                "those names to approve it; this approval carries no such confirmation")

    def refuse(self, ctx: ToolContext, tool: str, reason: str) -> str:
        """Record that a call did not run, and tell the model why."""
        self.store.audit(self.thread_id, "refused", call_id=ctx.tool_call_id, tool=tool,
                         actor="devagent", detail={"reason": reason})
        return reason


def execute_command(rt: ToolRuntime, call_id: str, command: str, timeout_s: int | None) -> str:
    """Run an approved command in the container and record what happened."""
    entered = time.monotonic()
    container = rt.ensure_container()
    with rt.exec_lock:
        # Checked after the container is up and under the lock: nothing else starts from here on.
        start = verify_workspace_unchanged(rt, call_id, "run_shell", entered)
        output = _run_command(rt, container, call_id, command, timeout_s)
        if not rt.aborted:
            record_command_state(rt, start)
    return output


def _run_command(rt: ToolRuntime, container: ThreadContainer, call_id: str, command: str,
                 timeout_s: int | None) -> str:
    store = rt.store
    with store.batch():  # one commit before the command starts, one after it ended
        store.mark_status(rt.thread_id, call_id, "running")
        store.audit(rt.thread_id, "executing", call_id=call_id, tool="run_shell", actor="devagent",
                    detail={"command": command, "sha256": sha256_text(command)})
    started = time.monotonic()
    lines = command.strip().split("\n")
    shortened = lines[0][:60] + ("…" if len(lines[0]) > 60 or len(lines) > 1 else "")
    rt.on_command(call_id, command)
    beat = Heartbeat(store.home, rt.thread_id)
    with rt.doing(f"running `{shortened}`"):
        beat()
        try:
            result = container.exec(command, timeout_s=timeout_s, on_output=rt.on_output, on_tick=beat)
        finally:
            beat()
    if rt.aborted:
        # Ctrl-C killed it part-way: leave the call "running" so `resume` asks again.
        store.audit(rt.thread_id, "interrupted", call_id=call_id, tool="run_shell", actor="user",
                    detail={"note": "killed by Ctrl-C while running"}, duration_s=round(time.monotonic() - started, 3))
        return "interrupted by the user; the command was killed"
    for_model = result.for_model()
    with store.batch():
        store.audit(
            rt.thread_id, "executed", call_id=call_id, tool="run_shell", actor="devagent",
            detail={"total_bytes": result.total_bytes, "timed_out": result.timed_out, "output": for_model},
            exit_code=result.exit_code, duration_s=round(time.monotonic() - started, 3),
        )
        store.mark_status(rt.thread_id, call_id, "done")
    return for_model


# ---------------------------------------------------------------------------- the workspace an approval binds
#
# Every screen computes the state of the workspace (ignored files included) and records its
# fingerprint for the call when it differs from the last one recorded ("workspace seen"; the
# proposal is recorded too, for approvals by a rule, which have no screen). An
# approval binds the last state seen before the decision; right before the command starts the
# state is computed again, and if it differs the call does not run: it goes back to pending, the
# reason is recorded ("workspace changed") and the runner asks again, listing the new changes.

SEEN_EVENT = "workspace seen"
CHANGED_EVENT = "workspace changed"


class WorkspaceChangedError(DevagentError):
    """An approved call found the workspace changed since its screen; it is pending again."""


@dataclass
class ChangeReport:
    changes: list[FileChange]
    fingerprint: str  # of the state the list was computed on ("" when it could not be computed)
    error: str | None  # why the list is incomplete or unknown


def changes_since_last_command(workspace: ThreadWorkspace) -> ChangeReport:
    """What changed in the workspace since the last command ran (e.g. an edited Makefile before
    `make`), ignored files included; an error says what could not be known."""
    try:
        state = workspace.state()
        fingerprint = workspace.remember_state(state)
    except (OSError, DevagentError) as exc:
        return ChangeReport([], "", f"the workspace could not be read ({exc}); what changed is unknown")
    errors = []
    if state.unreadable:
        errors.append(f"devagent cannot read {count(len(state.unreadable), 'path')} (e.g. {quote_path(state.unreadable[0])}); "
                      "changes in them are unknown")
    last = workspace.load_state(LAST_COMMAND)
    if last is None:
        errors.append("the state after the last command was not recorded; what changed since is unknown")
        return ChangeReport([], fingerprint, "; ".join(errors))
    changes, error = workspace.list_changes(last, state)
    if error:
        errors.append(error)
    return ChangeReport(changes, fingerprint, "; ".join(errors) or None)


def current_fingerprint(workspace: ThreadWorkspace) -> str:
    """The fingerprint of the workspace now ("" if it cannot be read: nothing can match it)."""
    try:
        return workspace.remember_state(workspace.state())
    except (OSError, DevagentError):
        return ""


def record_seen(store: Store, thread_id: str, call_id: str, fingerprint: str) -> None:
    """Note the state of the workspace a call was shown (or proposed) with, if it is a new one."""
    seen = store.call_events(thread_id, call_id, SEEN_EVENT)
    if not seen or seen[-1]["detail"].get("fingerprint") != fingerprint:
        # Not one of the call's own events (those tell what happened to it): the call is named inside.
        store.audit(thread_id, SEEN_EVENT, actor="devagent", detail={"call_id": call_id, "fingerprint": fingerprint})


def approved_fingerprint(store: Store, approval: Approval) -> str | None:
    """The state of the workspace the approval of a call was given on: the last one seen before it."""
    if approval.decided_at is None:
        return None
    seen = [e for e in store.call_events(approval.thread_id, approval.call_id, SEEN_EVENT)
            if e["at"] <= approval.decided_at]
    return seen[-1]["detail"].get("fingerprint") if seen else None


def workspace_notice(store: Store, approval: Approval) -> str | None:
    """Why a call that was approved is asked again, if that is the case."""
    changed = store.call_events(approval.thread_id, approval.call_id, CHANGED_EVENT)
    if not changed or approval.status != "pending" or changed[-1]["at"] < (approval.decided_at or 0):
        return None
    detail = changed[-1]["detail"]
    files = detail.get("changes") or []
    listed = ", ".join(files[:5]) + (f" and {detail.get('count', len(files)) - 5} more" if len(files) > 5 else "")
    what = f" ({listed})" if listed else " (the files are listed below as changed since the last command)"
    return f"this call was approved, but the workspace changed before it started{what}; it did not run"


def screened_request(store: Store, thread: Thread, approval: Approval, workspace: ThreadWorkspace, *,
                     screen: bool = True) -> ApprovalRequest:
    """A call as its approval screen shows it: what it is, and what changed in the workspace since
    the last command. `screen=False`: only what the call is (cheaper, records nothing). Showing a
    pending call binds its approval to the state it was shown with."""
    from devagent.decisions import call_request

    report = changes_since_last_command(workspace) if screen else ChangeReport([], "", None)
    if screen and approval.status == "pending":
        record_seen(store, thread.id, approval.call_id, report.fingerprint)
    return call_request(store, thread, approval, changed_files=report.changes,
                        changes_error=report.error, workspace_fingerprint=report.fingerprint or None,
                        workspace_notice=workspace_notice(store, approval) if screen else None)


def verify_workspace_unchanged(rt: ToolRuntime, call_id: str, tool: str, entered: float) -> str:
    """The fingerprint the call starts from, if the workspace is in the state its approval was given
    on, or got there only through commands this process ran from such a state (the approved calls of
    one model turn run one after the other). Otherwise the call goes back to pending and
    WorkspaceChangedError stops the run; calls of the same turn that were waiting do not start either."""
    store, ws = rt.store, rt.workspace
    if rt.halted_at is not None and entered <= rt.halted_at:
        raise WorkspaceChangedError(f"call {call_id} did not start: another call of its turn is asked again")
    approval = store.approval(rt.thread_id, call_id)
    bound = approved_fingerprint(store, approval) if approval else None
    try:
        state = ws.state()
        now = state.fingerprint
    except (OSError, DevagentError):
        state, now = None, ""
    allowed = {bound} if bound else set()
    for before, after in rt.transitions:
        if before in allowed:
            allowed.add(after)
    if now and now in allowed:
        return now
    approved = ws.load_state(f"fp-{bound}") if bound else None
    changes: list[str] = []
    if approved is not None and state is not None:
        changes = [str(c) for c in ws.list_changes(approved, state)[0]]
    if state is not None:
        ws.remember_state(state)
    store.mark_status(rt.thread_id, call_id, "pending")
    store.audit(rt.thread_id, CHANGED_EVENT, call_id=call_id, tool=tool, actor="devagent",
                detail={"approved": bound, "now": now, "changes": changes[:50], "count": len(changes),
                        "note": "not run: the workspace is not in the state the approval was given on; asked again"})
    rt.halted_at = time.monotonic()
    raise WorkspaceChangedError(f"the workspace changed after call {call_id} was approved; it did not run")


def record_command_state(rt: ToolRuntime, start: str) -> None:
    """The state after a command: what the next screen's "files changed" list is compared with,
    and a state the other approved calls of the turn may start from."""
    try:
        state = rt.workspace.state()
        rt.workspace.save_state(state, LAST_COMMAND)
        rt.transitions.append((start, state.fingerprint))
    except (OSError, DevagentError):
        # The next screen then says that what changed is unknown, rather than list too little.
        (rt.workspace.root / "states" / LAST_COMMAND).unlink(missing_ok=True)


__all__ = ["ToolRuntime", "execute_command", "changes_since_last_command", "WorkspaceChangedError", "record_seen",
           "workspace_notice", "verify_workspace_unchanged", "confirmation_words", "same_words", "current_fingerprint"]
