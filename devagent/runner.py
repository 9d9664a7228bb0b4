"""One turn of a thread: start or resume the SDK run, hand interruptions to approvals, save state.

The loop, in one sitting:

    result = run(agent, task or restored state)
    while result has interruptions:
        save the paused RunState and record each call as pending (exact arguments + sha256)
        approve what "always" rules cover; ask the human for the rest (if anyone can be asked)
        if nothing was decided: stop here, paused (exit 3); `resume` picks it up later
        restore the saved state, apply the store's decisions (verified), run again
    commit the turn on the thread's branch

The saved blob never carries decisions: they live in the store, bound to call id + sha256, and
are re-applied (and checked) at every resume.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from devagent.approvals import ApprovalRequest, build_request
from devagent.config import SANDBOX_IMAGE, SandboxLimits, devagent_home, sandbox_user
from devagent.errors import ApprovalMismatch, DevagentError, ImageMissing, StateCorrupted
from devagent.migrations import Database, attach_migrations, bind_proposed_sql, bound_sql_digest
from devagent.paths import WorkspacePaths
from devagent.sandbox import ContainerSpec, ThreadContainer, image_exists
from devagent.store import Store, Thread, ThreadLock, new_thread_id, sha256_text
from devagent.workspace import ThreadWorkspace, find_repo


class TurnEvents(Protocol):
    """What the runner tells whoever is watching (the CLI renders it)."""

    def notice(self, text: str) -> None: ...
    def tool_call(self, name: str, arguments: str, call_id: str = "") -> None: ...
    def tool_result(self, name: str, output: str, call_id: str = "") -> None: ...
    def command_output(self, text: str) -> None: ...
    def assistant_message(self, text: str) -> None: ...
    def approved_by_rule(self, call_id: str, tool: str, arguments: str) -> None: ...


class Approver(Protocol):
    def decide(self, request: ApprovalRequest) -> Decision | None:
        """A decision, or None when nobody can be asked (the run then pauses)."""


@dataclass(frozen=True)
class Decision:
    approved: bool
    reason: str | None = None
    always: bool = False
    stop: bool = False  # reject, and end the turn once the calls already approved have run


STOPPED_BY_USER = "(stopped by the user)"  # the final output of a turn the user stopped


class NoApprover:
    """Non-interactive mode: never asks, so the first approval pauses the run."""

    def decide(self, request: ApprovalRequest) -> Decision | None:
        return None


class SilentEvents:
    def notice(self, text: str) -> None: ...
    def tool_call(self, name: str, arguments: str, call_id: str = "") -> None: ...
    def tool_result(self, name: str, output: str, call_id: str = "") -> None: ...
    def command_output(self, text: str) -> None: ...
    def assistant_message(self, text: str) -> None: ...
    def approved_by_rule(self, call_id: str, tool: str, arguments: str) -> None: ...


@dataclass
class TaskOptions:
    model: str | None = None
    base_url: str | None = None
    network: bool = False
    database: str = "sqlite"
    max_turns: int = 50


@dataclass
class TurnOutcome:
    thread_id: str
    status: str  # done | paused
    final_output: str | None = None
    pending: list[ApprovalRequest] = field(default_factory=list)
    commit: str | None = None
    diffstat: str = ""
    commands_run: int = 0
    note: str | None = None


@dataclass
class _Turn:
    thread: Thread
    workspace: ThreadWorkspace
    agent: Any
    session: Any
    runtime: Any
    task: str


class ThreadRunner:
    def __init__(self, store: Store | None = None, *, events: TurnEvents | None = None,
                 approver: Approver | None = None, model: Any = None, docker_client: Any = None) -> None:
        self.home = store.home if store else devagent_home()
        self.store = store or Store(self.home)
        self.events = events or SilentEvents()
        self.approver = approver or NoApprover()
        self.model_override = model  # tests pass a scripted SDK Model here
        self._docker = docker_client
        self._active: Any = None

    # ------------------------------------------------------------------ public entry points

    def workspace(self, thread_id: str) -> ThreadWorkspace:
        return ThreadWorkspace(thread_id, self.home / "threads" / thread_id)

    def docker(self) -> Any:
        if self._docker is None:
            from devagent.sandbox import connect

            self._docker = connect()
        return self._docker

    def create_thread(self, repo: Path, options: TaskOptions) -> Thread:
        """A new thread: checkout + branch now; the container is created on first use."""
        from devagent.agent import ModelChoice  # imports the agent SDK: only when needed

        Database.parse(options.database)  # a bad --database is a usage error before anything exists
        source = find_repo(repo)
        if not image_exists(self.docker(), SANDBOX_IMAGE):
            raise ImageMissing(f"the sandbox image {SANDBOX_IMAGE} is missing; build it with `devagent sandbox build`")
        choice = ModelChoice.resolve(options.model, options.base_url)
        if self.model_override is None:
            choice.build()  # fail now, with a clear message, if no model is configured
        thread_id = new_thread_id()
        ws = self.workspace(thread_id)
        base = ws.create(source, owner=sandbox_user())
        settings = {"model": choice.name, "base_url": choice.base_url, "network": options.network,
                    "database": options.database, "max_turns": options.max_turns}
        thread = self.store.create_thread(thread_id, str(source), ws.branch, base, settings)
        self.store.audit(thread_id, "created", actor="user", detail={"repo": str(source), "base": base})
        return thread

    def update_thread(self, thread_id: str, **changes: Any) -> None:
        """Change a thread's model settings (model, base_url, max_turns) for its next turns."""
        given = {key: value for key, value in changes.items() if value is not None}
        if given:
            settings = self.store.thread(thread_id).settings
            self.store.update_settings(thread_id, {**settings, **given})

    async def run_task(self, thread_id: str, task: str) -> TurnOutcome:
        with ThreadLock(self.home, thread_id):
            saved = self.store.run(thread_id)
            if saved is not None and saved[1] is not None:
                raise DevagentError(
                    f"thread {thread_id} is paused waiting for approval; use `devagent pending {thread_id}`, "
                    f"then `devagent resume {thread_id}`"
                )
            turn = self._prepare(thread_id, task)
            self.store.save_run(thread_id, task, None)
            self.store.audit(thread_id, "task", actor="user", detail={"task": task})
            return await self._drive(turn, task)

    async def resume(self, thread_id: str) -> TurnOutcome:
        with ThreadLock(self.home, thread_id):
            saved = self.store.run(thread_id)
            if saved is None:
                raise DevagentError(f"thread {thread_id} has nothing to resume (state: {self.store.thread(thread_id).state})")
            task, blob = saved
            turn = self._prepare(thread_id, task)
            self._requeue_interrupted(thread_id)
            if blob is None:
                # The process died before the first pause: start the turn again.
                self.events.notice("no approval was pending; restarting the interrupted turn")
                return await self._drive(turn, task)
            return await self._drive(turn, blob=blob)

    def abort(self) -> None:
        """Ctrl-C: kill whatever command is running and stop the container (the state is saved)."""
        runtime = self._active
        if runtime is not None:
            runtime.aborted = True
            runtime.container.kill_processes()
            runtime.container.stop()

    def apply(self, thread_id: str) -> str:
        """Merge the thread's branch (with any uncommitted work) into the user's current branch."""
        thread = self.store.thread(thread_id)
        with ThreadLock(self.home, thread_id):
            ws = self.workspace(thread_id)
            ws.commit_turn("devagent: uncommitted work")
            head = ws.apply_to(Path(thread.repo))
        self.store.audit(thread_id, "applied", actor="user", detail={"repo": thread.repo, "commit": head})
        return head

    def discard(self, thread_id: str) -> None:
        """Delete the thread: containers, networks, volumes, checkout, branch, rows, conversation."""
        import asyncio

        from agents import SQLiteSession

        from devagent.sandbox import remove_thread_resources

        self.store.thread(thread_id)
        with ThreadLock(self.home, thread_id):
            remove_thread_resources(self.docker(), thread_id)
            self.workspace(thread_id).discard()
            asyncio.run(SQLiteSession(thread_id, str(self.store.sessions_path)).clear_session())
            self.store.delete_thread(thread_id)

    @contextmanager
    def user_container(self, thread_id: str) -> Iterator[Any]:
        """The thread's running container for `devagent shell`; stopped again afterwards."""
        with ThreadLock(self.home, thread_id):
            turn = self._prepare(thread_id, "shell")
            try:
                yield turn.runtime.ensure_container()
            finally:
                turn.runtime.container.stop()
                self.store.set_thread_state(thread_id, "paused" if self.store.run(thread_id) else "done")

    def pending_requests(self, thread_id: str) -> list[ApprovalRequest]:
        thread = self.store.thread(thread_id)
        return [self._request(thread, a) for a in self.store.approvals(thread_id, "pending")]

    # ------------------------------------------------------------------ the loop

    async def _drive(self, turn: _Turn, run_input: Any = None, *, blob: str | None = None) -> TurnOutcome:
        """Run (or, given a saved blob, continue) until done or paused. The container stops after."""
        try:
            if blob is not None:
                result = await self._decide_and_continue(turn, blob)
            else:
                result = await self._run_once(turn, run_input)
            while not isinstance(result, TurnOutcome) and result.interruptions:
                blob = result.to_state().to_string()
                self.store.save_run(turn.thread.id, turn.task, blob)
                self.store.set_thread_state(turn.thread.id, "paused")
                for item in result.interruptions:
                    self.store.add_pending(turn.thread.id, item.call_id, item.name, item.arguments or "")
                    # A path migration's file content is bound now, before anyone is shown it.
                    bind_proposed_sql(turn.runtime, item.call_id, item.name, item.arguments or "")
                result = await self._decide_and_continue(turn, blob)
            if isinstance(result, TurnOutcome):
                return result
            return self._finish(turn, result)
        finally:
            self._active = None
            turn.runtime.container.stop()

    async def _decide_and_continue(self, turn: _Turn, blob: str) -> Any:
        """Ask for decisions; run again if any was made, else return the paused outcome."""
        tid = turn.thread.id
        self._apply_rules(turn.thread)
        batch = self.store.approvals(tid, "pending")
        for index, approval in enumerate(batch, 1):
            if not self._decided(tid, approval.call_id):
                request = self._request(turn.thread, approval)
                request.batch_index, request.batch_size = index, len(batch)
                decision = self.approver.decide(request)
                if decision is None:
                    break
                self.store.decide(tid, approval.call_id, "approved" if decision.approved else "rejected",
                                  actor="user", reason=decision.reason, always=decision.always)
                if decision.stop:
                    self._stop_turn(turn, decision.reason)
                    break
                self._apply_rules(turn.thread)
        state = await self._restore(turn, blob)
        if not any(self._decided(tid, item.call_id) for item in state.get_interruptions()):
            pending = self.pending_requests(tid)
            return TurnOutcome(tid, "paused", pending=pending)
        self.store.set_thread_state(tid, "running")
        return await self._run_once(turn, state)

    async def _run_once(self, turn: _Turn, run_input: Any) -> Any:
        from agents import ItemHelpers, RunConfig, Runner
        from agents.exceptions import AgentsException, MaxTurnsExceeded

        self._active = turn.runtime
        config = RunConfig(tracing_disabled=True, tool_not_found_behavior="return_error_to_model")
        try:
            result = Runner.run_streamed(turn.agent, run_input, session=turn.session,
                                         max_turns=turn.thread.settings.get("max_turns", 50), run_config=config)
            async for event in result.stream_events():
                if event.type != "run_item_stream_event":
                    continue
                item = event.item
                if event.name == "tool_called":
                    raw = item.raw_item
                    self.events.tool_call(getattr(raw, "name", "?"), getattr(raw, "arguments", "") or "",
                                          call_id=getattr(raw, "call_id", "") or "")
                elif event.name == "tool_output":
                    raw = item.raw_item
                    name = raw.get("name", "") if isinstance(raw, dict) else getattr(raw, "name", "")
                    call_id = raw.get("call_id", "") if isinstance(raw, dict) else getattr(raw, "call_id", "")
                    self.events.tool_result(name or "tool", str(item.output), call_id=call_id or "")
                elif event.name == "message_output_created":
                    self.events.assistant_message(ItemHelpers.text_message_output(item))
            return result
        except MaxTurnsExceeded:
            self._checkpoint(turn)
            self._end_turn(turn)  # continuing is a new task on the thread (its memory is kept)
            raise DevagentError(
                f"the agent used its {turn.thread.settings.get('max_turns')} turns; work so far is committed on "
                f"{turn.workspace.branch}. Continue with: devagent task --thread {turn.thread.id} \"continue\" "
                "(raise --max-turns for long tasks)"
            ) from None
        except UnicodeEncodeError:
            # The SDK cannot even fingerprint a tool call holding a lone surrogate; nothing ran.
            self._checkpoint(turn)
            self._end_turn(turn)
            raise DevagentError(
                "the model sent a tool call that is not valid Unicode text (a lone surrogate); nothing ran. "
                f"Continue with: devagent task --thread {turn.thread.id} \"...\""
            ) from None
        except AgentsException as exc:
            self._checkpoint(turn)
            raise DevagentError(f"the model misbehaved: {exc}") from None
        except Exception as exc:
            if type(exc).__module__.startswith(("openai", "httpx")):
                self._checkpoint(turn)
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DevagentError(
                    f"model API error ({type(exc).__name__}): {first}; the thread is saved, "
                    f"retry with `devagent resume {turn.thread.id}`"
                ) from None
            raise

    # ------------------------------------------------------------------ helpers

    def _prepare(self, thread_id: str, task: str) -> _Turn:
        from agents import SQLiteSession

        from devagent.agent import ModelChoice, build_agent  # the agent SDK: imported when a turn runs
        from devagent.tools import ToolRuntime, build_tools

        thread = self.store.thread(thread_id)
        ws = self.workspace(thread_id)
        if not ws.git_dir.is_dir():
            raise StateCorrupted(f"the checkout of thread {thread_id} is missing ({ws.root}); discard the thread")
        settings = thread.settings
        spec = ContainerSpec(thread_id, ws.work_dir, ws.git_dir, network=bool(settings.get("network")),
                             limits=SandboxLimits())
        container = ThreadContainer(self.docker(), spec)
        runtime = ToolRuntime(thread_id=thread_id, store=self.store, workspace=ws, container=container,
                              network=spec.network, sandbox_owner=sandbox_user(),
                              on_output=self.events.command_output)
        database = attach_migrations(runtime, settings)
        model = self.model_override or ModelChoice(settings["model"], settings.get("base_url")).build()
        agent = build_agent(build_tools(runtime), model, network=spec.network, database=database)
        session = SQLiteSession(thread_id, str(self.store.sessions_path))
        self.store.set_thread_state(thread_id, "running")
        return _Turn(thread, ws, agent, session, runtime, task)

    def _request(self, thread: Thread, approval: Any) -> ApprovalRequest:
        from devagent.tools import changed_files_since_last_command

        ws = self.workspace(thread.id)
        try:
            changed = changed_files_since_last_command(self.store, ws, thread.id)
        except DevagentError:
            changed = []
        return build_request(
            approval, network=bool(thread.settings.get("network")),
            default_timeout_s=SandboxLimits().default_timeout_s, changed_files=changed,
            database=thread.settings.get("database_display") or thread.settings.get("database"),
            sql_loader=WorkspacePaths(ws.work_dir).read_text,
            sql_bound_sha256=bound_sql_digest(self.store, thread.id, approval.call_id),
            sql_dialect=Database.parse(thread.settings.get("database")).engine,
        )

    def _apply_rules(self, thread: Thread) -> None:
        """Approve pending calls that an "approve always" rule of this thread covers exactly."""
        for approval in self.store.approvals(thread.id, "pending"):
            if self.store.has_rule(thread.id, approval.tool, approval.arguments):
                self.store.decide(thread.id, approval.call_id, "approved", actor="rule (approve always)")
                self.events.approved_by_rule(approval.call_id, approval.tool, approval.arguments)

    def _stop_turn(self, turn: _Turn, reason: str | None) -> None:
        """The user stopped the turn: every call still pending is rejected with the same reason,
        and the run ends once the calls already approved have run, without asking the model again
        (its work is committed as at any end of a turn)."""
        from agents.agent import ToolsToFinalOutputResult

        for approval in self.store.approvals(turn.thread.id, "pending"):
            self.store.decide(turn.thread.id, approval.call_id, "rejected", actor="user", reason=reason)
        turn.agent = turn.agent.clone(tool_use_behavior=lambda _ctx, _results: ToolsToFinalOutputResult(
            is_final_output=True, final_output=STOPPED_BY_USER))

    def _decided(self, thread_id: str, call_id: str) -> bool:
        row = self.store.approval(thread_id, call_id)
        return row is not None and row.status != "pending"

    def _requeue_interrupted(self, thread_id: str) -> None:
        """A call that was running when the process died goes back to pending: ask again."""
        for approval in self.store.approvals(thread_id, "running"):
            self.store.mark_status(thread_id, approval.call_id, "pending")
            self.store.audit(thread_id, "interrupted", call_id=approval.call_id, tool=approval.tool,
                             actor="devagent", detail={"note": "was running when the run stopped; approve again to re-run"})

    async def _restore(self, turn: _Turn, blob: str) -> Any:
        """Rebuild the paused run and apply the store's decisions, refusing anything tampered."""
        from agents import RunState

        tid = turn.thread.id
        try:
            data = json.loads(blob)
        except ValueError:
            raise StateCorrupted(f"the saved run of thread {tid} is not valid JSON; it cannot be resumed") from None
        self._check_blob_decisions(tid, data.get("context") or {})
        try:
            state = await RunState.from_string(turn.agent, blob)
        except Exception as exc:
            raise StateCorrupted(f"the saved run of thread {tid} cannot be restored: {exc}") from None
        for item in state.get_interruptions():
            row = self.store.approval(tid, item.call_id)
            if row is None:
                raise ApprovalMismatch(
                    f"the saved run of thread {tid} holds a call ({item.call_id}) that was never proposed; refusing to resume"
                )
            if row.sha256 != sha256_text(item.arguments or "") or row.tool != item.name:
                raise ApprovalMismatch(
                    f"the arguments of call {item.call_id} in the saved run differ from what was proposed "
                    "(sha256 mismatch); refusing to resume"
                )
            if row.status in ("approved", "done"):
                state.approve(item)
            elif row.status == "rejected":
                state.reject(item, rejection_message=f"The user rejected this call. Reason: {row.reason or '(none given)'}")
        return state

    def _check_blob_decisions(self, thread_id: str, context: dict[str, Any]) -> None:
        """Decisions a saved blob carries (from earlier resumes) must all be in the store."""
        records = list((context.get("approvals") or {}).values())
        records += [entry.get("decision") or {} for entry in context.get("function_tool_approvals") or []]
        tampered = bool(context.get("hosted_mcp_approvals"))
        for record in records:
            for kind, allowed in (("approved", ("approved", "running", "done")), ("rejected", ("rejected",))):
                ids = record.get(kind) or []
                if ids is True or not isinstance(ids, list):
                    tampered = True  # a blanket decision is never something devagent records
                    continue
                for call_id in ids:
                    row = self.store.approval(thread_id, call_id)
                    tampered |= row is None or row.status not in allowed
        if tampered:
            raise ApprovalMismatch(
                f"the saved run of thread {thread_id} carries approvals that devagent never recorded "
                "(it was edited); refusing to resume"
            )

    def _end_turn(self, turn: _Turn) -> None:
        self.store.clear_run(turn.thread.id)
        self.store.set_thread_state(turn.thread.id, "done")

    def _checkpoint(self, turn: _Turn) -> None:
        try:
            turn.workspace.commit_turn(f"{turn.task}\n\n(devagent: turn interrupted)")
        except DevagentError:
            pass

    def _finish(self, turn: _Turn, result: Any) -> TurnOutcome:
        tid = turn.thread.id
        commit = turn.workspace.commit_turn(turn.task)
        diffstat = turn.workspace.git("show", "--stat", "--format=", commit) if commit else ""
        self._end_turn(turn)
        commands = sum(1 for e in self.store.audit_log(tid) if e["event"] == "executed" and e["at"] >= self._turn_start(tid))
        self.store.audit(tid, "turn finished", actor="devagent", detail={"commit": commit})
        return TurnOutcome(tid, "done", final_output=str(result.final_output or ""), commit=commit,
                           diffstat=diffstat.strip(), commands_run=commands)

    def _turn_start(self, thread_id: str) -> float:
        starts = [e["at"] for e in self.store.audit_log(thread_id) if e["event"] == "task"]
        return starts[-1] if starts else 0.0


__all__ = ["ThreadRunner", "TaskOptions", "TurnOutcome", "Decision", "Approver", "TurnEvents", "NoApprover"]
