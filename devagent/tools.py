"""The tool functions the model calls. Each delegates to the workspace, the sandbox or migrations.

File tools act on the thread's checkout through `WorkspacePaths` (the one confinement resolver).
`run_shell` and `run_migration` always stop for approval; when they finally execute they check
the store once more, so only a call whose exact arguments a human (or an "always" rule) approved
can run, whatever a saved run blob claims. They also check that the workspace is in the state the
approval was given on (see "the workspace an approval binds" below), and run one at a time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents import FunctionTool, function_tool
from agents.exceptions import AgentsException
from agents.tool_context import ToolContext

from devagent.approvals import read_shell_call
from devagent.errors import DevagentError
from devagent.paths import FileToolError, PathOutsideWorkspace, WorkspacePaths
from devagent.sandbox import ThreadContainer
from devagent.store import Approval, Store, sha256_text
from devagent.workspace import LAST_COMMAND, FileChange, ThreadWorkspace, quote_path

READ_LIMIT = 64 * 1024
SEARCH_MATCH_LIMIT = 200
SEARCH_FILE_LIMIT = 2 * 1024 * 1024
SEARCH_TIME_LIMIT_S = 5.0


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
    # Set by the migrations part: runs approved SQL in the thread's database.
    migrate: Callable[..., str] | None = None
    started: bool = field(default=False, init=False)
    aborted: bool = field(default=False, init=False)  # set by Ctrl-C: results are not trusted
    git_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    # Commands and migrations run one at a time, each from a known state of the workspace (the
    # SDK would start the calls of one model turn in parallel).
    exec_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    # (fingerprint before, fingerprint after) of every command this process ran, in order.
    transitions: list[tuple[str, str]] = field(default_factory=list, init=False)
    halted_at: float | None = field(default=None, init=False)  # when a call found the workspace changed

    @property
    def paths(self) -> WorkspacePaths:
        # Files the host writes as root must stay writable by the sandbox's uid.
        return WorkspacePaths(self.workspace.work_dir, owner=self.sandbox_owner if os.getuid() == 0 else None)

    def ensure_container(self) -> ThreadContainer:
        if not self.started:
            self.container.ensure_running()
            self.started = True
        return self.container

    def authorize(self, ctx: ToolContext, tool: str) -> str | None:
        """None if this exact call was approved; otherwise the refusal the model reads."""
        row = self.store.approval(self.thread_id, ctx.tool_call_id)
        digest = sha256_text(ctx.tool_arguments)
        if row is None or row.tool != tool or row.sha256 != digest:
            return f"refused: this {tool} call was never approved by a human; nothing ran"
        if row.status == "done":
            # Replaying a saved run after a crash: the call ran already; give back what it said.
            recorded = [e["detail"].get("output") for e in self.store.audit_log(self.thread_id)
                        if e["event"] == "executed" and e["call_id"] == ctx.tool_call_id]
            if recorded and recorded[-1]:
                return f"[this call already ran once and is not run again; its result was:]\n{recorded[-1]}"
            return "refused: this call was already executed once; propose it again to re-run it"
        if row.status != "approved":
            return f"refused: this call is {row.status}, not approved; nothing ran"
        return None

    def confirmation_refusal(self, call_id: str, sql: str, dialect: str) -> str | None:
        """None unless `sql` (exactly what is about to run) destroys data and the approval of this
        call lacks a human's typed confirmation of exactly the names it destroys. No rule, and no
        approval given for other SQL, stands in for that confirmation."""
        required = confirmation_words(sql, dialect)
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


def confirmation_words(sql: str, dialect: str) -> tuple[str, ...]:
    """The names a human types to approve this SQL, one per object it destroys; () when it
    destroys nothing. The one place that reads them from the analysis."""
    from devagent.sql_analysis import FALLBACK_CONFIRMATION, analyze_sql

    analysis = analyze_sql(sql, dialect)
    if not analysis.destructive:
        return ()
    words = getattr(analysis, "confirmation_words", None)
    if words is None:
        words = [analysis.confirmation_word]
    return tuple(dict.fromkeys(w for w in words if w)) or (FALLBACK_CONFIRMATION,)


def same_words(typed: tuple[str, ...] | list[str], required: tuple[str, ...]) -> bool:
    """Whether what was typed names exactly the objects the SQL destroys (order aside)."""
    return bool(required) and set(typed) == set(required)


def _error_to_model(_ctx: Any, error: Exception) -> str | None:
    if isinstance(error, WorkspaceChanged):
        return None  # not for the model: the runner asks the human again
    # Our errors are written for the model; pass them through instead of a generic message.
    return f"error: {error}"


def _result_or_error(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except (PathOutsideWorkspace, FileToolError) as exc:
        return f"error: {exc}"


def build_tools(rt: ToolRuntime) -> list[FunctionTool]:
    @function_tool(failure_error_function=_error_to_model)
    def read_file(path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        """Read a UTF-8 text file of the workspace, optionally only lines start_line..end_line (1-based)."""

        def read() -> str:
            # Reads no further than what it returns, however large the file.
            window = rt.paths.read_window(path, start_line, end_line, READ_LIMIT)
            return window.text + window.note()

        return _result_or_error(read)

    @function_tool(failure_error_function=_error_to_model)
    def list_files(path: str = ".", pattern: str | None = None) -> str:
        """List files under a workspace directory (recursive), optionally filtered by a glob pattern."""

        def listing() -> str:
            # When capped, the list's last entry says how many more files exist.
            return "\n".join(rt.paths.iter_files(path, pattern)) or "(no files)"

        return _result_or_error(listing)

    @function_tool(failure_error_function=_error_to_model)
    def search(pattern: str, path: str = ".") -> str:
        """Search workspace files for a regular expression; returns path:line: text for each match."""

        def grep() -> str:
            # `regex` (not `re`) because it can time out: a pathological pattern from the model
            # such as (a+)+$ must not hang the turn.
            import regex

            try:
                compiled = regex.compile(pattern)
            except regex.error as exc:
                return f"error: invalid regular expression: {exc}"
            deadline = time.monotonic() + SEARCH_TIME_LIMIT_S
            matches: list[str] = []
            files = rt.paths.iter_files(path)
            for rel in files[:-1] if files.omitted else files:
                try:
                    data = rt.paths.read_bytes(rel, SEARCH_FILE_LIMIT)
                except (FileToolError, PathOutsideWorkspace):
                    continue
                if b"\0" in data[:8192]:
                    continue  # binary
                for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                    try:
                        found = compiled.search(line[:4096], timeout=max(0.001, deadline - time.monotonic()))
                    except TimeoutError:
                        return "\n".join(matches + [f"[... search stopped after {SEARCH_TIME_LIMIT_S:.0f}s: "
                                                     "simplify the pattern or narrow the path]"])
                    if found:
                        matches.append(f"{rel}:{number}: {line[:300]}")
                        if len(matches) >= SEARCH_MATCH_LIMIT:
                            return "\n".join(matches) + f"\n[... stopped at {SEARCH_MATCH_LIMIT} matches]"
            return "\n".join(matches) or "(no matches)"

        return _result_or_error(grep)

    @function_tool(failure_error_function=_error_to_model)
    def write_file(path: str, content: str) -> str:
        """Create or overwrite a workspace file with content."""

        def write() -> str:
            rt.paths.write_text(path, content)
            return f"wrote {len(content.encode())} bytes to {path}"

        return _result_or_error(write)

    @function_tool(failure_error_function=_error_to_model)
    def edit_file(path: str, old: str, new: str) -> str:
        """Replace the exact text `old` (which must occur exactly once) with `new` in a workspace file."""

        def edit() -> str:
            rt.paths.edit_text(path, old, new)
            return f"edited {path}"

        return _result_or_error(edit)

    @function_tool(needs_approval=True, failure_error_function=_error_to_model)
    def run_shell(ctx: ToolContext, command: str, timeout_s: int | None = None) -> str:
        """Run a bash command in the thread's sandbox container (cwd /workspace). A human approves
        every command first. Output is capped (head and tail kept)."""
        refusal = rt.authorize(ctx, "run_shell")
        if refusal:
            return rt.refuse(ctx, "run_shell", refusal)
        # The raw arguments are what the human saw, read the same way the screen read them (not
        # the leniently coerced parameters, which would turn a timeout of "5" into a number).
        call = read_shell_call(ctx.tool_arguments, rt.container.spec.limits.default_timeout_s)
        if call.error:
            return rt.refuse(ctx, "run_shell", f"refused: {call.error}; nothing ran")
        return execute_command(rt, ctx.tool_call_id, call.command, call.timeout_s)

    @function_tool(needs_approval=True, failure_error_function=_error_to_model)
    def run_migration(ctx: ToolContext, sql: str | None = None, path: str | None = None,
                      database: str | None = None) -> str:
        """Apply a SQL migration (inline `sql`, or `path` of a .sql file in the workspace) to the
        thread's database, in one transaction. A human approves the exact SQL first."""
        refusal = rt.authorize(ctx, "run_migration")
        if refusal:
            return rt.refuse(ctx, "run_migration", refusal)
        if rt.migrate is None:
            return "error: migrations are not available in this thread"
        entered = time.monotonic()
        rt.ensure_container()
        with rt.exec_lock:
            start = verify_workspace_unchanged(rt, ctx.tool_call_id, "run_migration", entered)
            output = rt.migrate(rt, ctx.tool_call_id, sql=sql, path=path, database=database)
            record_command_state(rt, start)
        return output

    return [read_file, list_files, search, write_file, edit_file, run_shell, run_migration]


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
    store.mark_status(rt.thread_id, call_id, "running")
    store.audit(rt.thread_id, "executing", call_id=call_id, tool="run_shell", actor="devagent",
                detail={"command": command, "sha256": sha256_text(command)})
    started = time.monotonic()
    result = container.exec(command, timeout_s=timeout_s, on_output=rt.on_output)
    if rt.aborted:
        # Ctrl-C killed it part-way: leave the call "running" so `resume` asks again.
        store.audit(rt.thread_id, "interrupted", call_id=call_id, tool="run_shell", actor="user",
                    detail={"note": "killed by Ctrl-C while running"}, duration_s=round(time.monotonic() - started, 3))
        return "interrupted by the user; the command was killed"
    for_model = result.for_model()
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


class WorkspaceChanged(AgentsException):
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
        errors.append(f"devagent cannot read {len(state.unreadable)} path(s) (e.g. {quote_path(state.unreadable[0])}); "
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


def verify_workspace_unchanged(rt: ToolRuntime, call_id: str, tool: str, entered: float) -> str:
    """The fingerprint the call starts from, if the workspace is in the state its approval was given
    on, or got there only through commands this process ran from such a state (the approved calls of
    one model turn run one after the other). Otherwise the call goes back to pending and
    WorkspaceChanged stops the run; calls of the same turn that were waiting do not start either."""
    store, ws = rt.store, rt.workspace
    if rt.halted_at is not None and entered <= rt.halted_at:
        raise WorkspaceChanged(f"call {call_id} did not start: another call of its turn is asked again")
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
    raise WorkspaceChanged(f"the workspace changed after call {call_id} was approved; it did not run")


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


__all__ = ["ToolRuntime", "build_tools", "execute_command", "changes_since_last_command", "WorkspaceChanged",
           "record_seen", "workspace_notice", "verify_workspace_unchanged", "confirmation_words", "same_words"]
