"""One turn of a thread: start or resume the SDK run, hand interruptions to approvals, save state.

The loop, in one sitting:

    result = run(agent, task or restored state)
    loop:
        if result has interruptions:
            save the paused RunState and record each call as pending (exact arguments + sha256)
            approve what "always" rules cover; ask the human for the rest (if anyone can be asked)
            if nothing was decided: stop here, paused (exit 3); `resume` picks it up later
            apply the store's decisions (verified) to the paused run, run again
        elif the tools of one model response ran: run again from the conversation (the session)
        else: done
    commit the turn on the thread's branch

One SDK run covers one step of the model (its response and the tools that response called):
the SDK's own work at every step and pause (checking the run's earlier tool calls, saving and
restoring the paused run) grows with the items of the run, and a long turn would get slower at
every call. The conversation itself is the session's, which every run reads.

The saved blob never carries decisions: they live in the store, bound to call id + sha256, and
are re-applied (and checked) at every resume. Within one process the paused run continues from
memory: the blob is written at every pause for durability (a killed process loses nothing) but
read back only by another process (`resume`), or to ask again when the workspace changed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from devagent.approvals import ApprovalRequest
from devagent.decisions import Decision, record_decision, required_confirmation
from devagent.config import SANDBOX_IMAGE, ConfigError, devagent_home, load_config, sandbox_user, thread_limits
from devagent.errors import ApprovalMismatch, DevagentError, ImageMissing, StateCorrupted, UsageError
from devagent.instructions import InstructionFile, instructions_block, project_instruction_files
from devagent.migrations import Database, attach_migrations, bind_proposed_sql
from devagent.sandbox import ContainerSpec, ThreadContainer, image_exists
from devagent.store import Approval, Store, Thread, ThreadLock, new_thread_id, sha256_text
from devagent.workspace import TURN_WARN_BYTES, TURN_WARN_FILES, ThreadWorkspace, find_repo


class TurnEvents(Protocol):
    """What the runner tells whoever is watching (the CLI renders it)."""

    def notice(self, text: str) -> None: ...
    def tool_call(self, name: str, arguments: str, call_id: str = "") -> None: ...
    def tool_result(self, name: str, output: str, call_id: str = "") -> None: ...
    def command_output(self, text: str) -> None: ...
    def command_started(self, call_id: str, command: str) -> None:
        """An approved command starts; its output (command_output) follows."""
    def assistant_message(self, text: str) -> None: ...
    def approved_by_rule(self, call_id: str, tool: str, arguments: str) -> None: ...
    def known_call(self, call_id: str, tool: str, arguments: str) -> None:
        """A call proposed earlier (maybe in another process) that may run now: its result line
        names it."""
    def decision_applied(self, approval: Approval) -> None:
        """A recorded decision (maybe made by another process: `devagent approve`) is applied to the run."""
    def activity(self, what: str | None) -> None:
        """What is going on now ("thinking", "running `make test`"); None: nothing any more."""


class Approver(Protocol):
    def decide(self, request: ApprovalRequest) -> Decision | None:
        """A decision, or None when nobody can be asked (the run then pauses)."""


STOPPED_BY_USER = "(stopped by the user)"  # the final output of a turn the user stopped

# How often the approver is asked again when it approves destructive SQL without the typed names.
CONFIRM_ATTEMPTS = 3


class NoApprover:
    """Non-interactive mode: never asks, so the first approval pauses the run."""

    def decide(self, request: ApprovalRequest) -> Decision | None:
        return None


class SilentEvents:
    def notice(self, text: str) -> None: ...
    def tool_call(self, name: str, arguments: str, call_id: str = "") -> None: ...
    def tool_result(self, name: str, output: str, call_id: str = "") -> None: ...
    def command_output(self, text: str) -> None: ...
    def command_started(self, call_id: str, command: str) -> None: ...
    def assistant_message(self, text: str) -> None: ...
    def approved_by_rule(self, call_id: str, tool: str, arguments: str) -> None: ...
    def known_call(self, call_id: str, tool: str, arguments: str) -> None: ...
    def decision_applied(self, approval: Approval) -> None: ...
    def activity(self, what: str | None) -> None: ...


@dataclass
class TaskOptions:
    """What the command line said; None means: the config files, environment or default decide."""

    model: str | None = None
    base_url: str | None = None
    network: bool | None = None
    database: str | None = None
    max_steps: int | None = None  # model round trips in one turn (the SDK calls them turns)
    include_uncommitted: bool = False  # start from the working tree, not HEAD


@dataclass
class TurnOutcome:
    thread_id: str
    status: str  # done | paused
    final_output: str | None = None
    pending: list[ApprovalRequest] = field(default_factory=list)
    commit: str | None = None
    diffstat: str = ""
    commands_run: int = 0
    commands_failed: int = 0  # of those, how many exited non-zero (or timed out)
    note: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)  # tokens of the whole turn, all processes (+ cost_usd)
    thread_usage: dict[str, Any] = field(default_factory=dict)  # tokens of every turn of the thread
    changed_files: list[str] = field(default_factory=list)  # "M path" since the turn started
    commands: list[dict[str, Any]] = field(default_factory=list)  # what ran this turn, with exit codes


WORKSPACE_CHANGED = object()  # a run stopped because an approved call found the workspace changed


class _StepEnd:
    """The agent's tool_use_behavior: a run ends once the tools of a model response have run;
    the runner starts the next step as a new run from the session (see the module's docstring)."""

    def __init__(self) -> None:
        self.ended = False

    def __call__(self, _context: Any, _results: Any) -> Any:
        from agents.agent import ToolsToFinalOutputResult

        self.ended = True
        return ToolsToFinalOutputResult(is_final_output=True, final_output=None)


@dataclass
class _Sandbox:
    thread: Thread
    workspace: ThreadWorkspace
    runtime: Any
    database: str  # how the agent is told of its database


@dataclass
class _Turn:
    thread: Thread
    workspace: ThreadWorkspace
    agent: Any
    session: Any
    runtime: Any
    task: str
    instruction_files: list[str] = field(default_factory=list)
    step: _StepEnd = field(default_factory=_StepEnd)
    steps_left: int | None = None  # model round trips this turn may still take


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
        self._policies: dict[str, Any] = {}  # thread id -> its command rules, loaded once per turn

    # ------------------------------------------------------------------ public entry points

    def workspace(self, thread_id: str) -> ThreadWorkspace:
        return ThreadWorkspace.of(self.home, thread_id)

    def docker(self) -> Any:
        if self._docker is None:
            from devagent.sandbox import connect

            self._docker = connect()
        return self._docker

    def create_thread(self, repo: Path, options: TaskOptions) -> Thread:
        """A new thread: checkout + branch now; the container is created on first use."""
        from devagent.agent import ModelChoice  # imports the agent SDK: only when needed


        source = find_repo(repo)
        try:
            config = load_config(source, {"model": options.model, "base_url": options.base_url,
                                          "network": options.network, "database": options.database,
                                          "max_steps": options.max_steps})
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        from devagent.policy import load_policy  # the rules parser: only where rules are read

        load_policy(source)  # a broken rules file fails here, before anything is created
        Database.parse(config["database"])  # a bad --database is a usage error before anything exists
        if not image_exists(self.docker(), SANDBOX_IMAGE):
            raise ImageMissing(f"the sandbox image {SANDBOX_IMAGE} is missing; build it with `devagent sandbox build`")
        choice = ModelChoice(config["model"], config["base_url"])
        if self.model_override is None:
            choice.build()  # fail now, with a clear message, if no model is configured
        thread_id = new_thread_id()
        ws = self.workspace(thread_id)
        ws.set_excludes(config["commit.exclude"])
        base = ws.create(source, owner=sandbox_user(), include_uncommitted=options.include_uncommitted)
        # The sandbox (network, database, limits) is the thread's for good; the model may change.
        settings = {"model": choice.name, "base_url": choice.base_url, "network": config["network"],
                    "database": config["database"], "max_turns": config["max_steps"],
                    "sandbox": config.sandbox(), "commit": config.section("commit")}
        thread = self.store.create_thread(thread_id, str(source), ws.branch, base, settings)
        self.store.audit(thread_id, "created", actor="user", detail={"repo": str(source), "base": base})
        return thread

    def update_thread(self, thread_id: str, **changes: Any) -> None:
        """Change a thread's model settings (model, base_url, max_turns) for its next turns."""
        given = {key: value for key, value in changes.items() if value is not None}
        if given:
            settings = self.store.thread(thread_id).settings
            self.store.update_settings(thread_id, {**settings, **given})

    async def run_task(self, thread_id: str, task: str, instructions: Any = None) -> TurnOutcome:
        """`instructions`: an extra InstructionFile (`--instructions FILE`) for this task only."""
        with ThreadLock(self.home, thread_id):
            saved = self.store.run(thread_id)
            if saved is not None and saved[1] is not None:
                raise DevagentError(
                    f"thread {thread_id} is paused waiting for approval; use `devagent pending {thread_id}`, "
                    f"then `devagent resume {thread_id}` (or drop that run: `devagent resume {thread_id} --abandon-turn`)"
                )
            # Kept with the thread so a resume of this task rebuilds the same instructions.
            extra = {"label": instructions.label, "text": instructions.text} if instructions else None
            self.update_thread(thread_id, extra_instructions=extra or {})
            self._load_rules(thread_id)
            turn = self._prepare(thread_id, task)
            self._start_early(turn.runtime)
            if turn.instruction_files:
                self.events.notice("instructions: " + ", ".join(turn.instruction_files))
            self.store.save_run(thread_id, task, None)
            # `head`: where the turn starts, so its summary lists the files it changed.
            head = turn.workspace.git("rev-parse", "HEAD").strip()
            self.store.audit(thread_id, "task", actor="user", detail={"task": task, "head": head})
            return await self._drive(turn, task)

    async def resume(self, thread_id: str) -> TurnOutcome:
        with ThreadLock(self.home, thread_id):
            saved = self.store.run(thread_id)
            if saved is None:
                raise DevagentError(f"thread {thread_id} has nothing to resume (state: {self.store.thread(thread_id).state})")
            task, blob = saved
            self._load_rules(thread_id)
            sandbox = self._sandbox(thread_id)
            self._requeue_interrupted(thread_id)
            # Before the agent SDK is imported (the longest part of a resume): the container
            # starts meanwhile, so an approved call finds it running.
            self._start_early(sandbox.runtime)
            try:
                turn = self._prepare(thread_id, task, sandbox)
            except BaseException:
                _Stopping(sandbox.runtime, background=False).wait()
                raise
            if blob is None:
                # The process died (or the model API failed) before the first pause: start the
                # turn again. The session may already hold the task: then it is not sent twice.
                self.events.notice("no approval was pending; restarting the interrupted turn")
                return await self._drive(turn, [] if await self._task_in_session(turn) else task)
            try:
                return await self._drive(turn, blob=blob)
            except (StateCorrupted, ApprovalMismatch) as exc:
                raise type(exc)(f"{exc}. To drop this run and keep the branch and the conversation: "
                                f"devagent resume {thread_id} --abandon-turn") from None

    async def abandon_turn(self, thread_id: str) -> int:
        """The way out of a run that cannot be resumed: drop it, keep the branch and the conversation.

        Calls the model proposed and nobody ran are answered in the conversation ("not run: the
        user abandoned the turn"), so the next task starts from a consistent history. Returns how
        many pending calls were dropped.
        """
        from agents import SQLiteSession

        with ThreadLock(self.home, thread_id):
            if self.store.run(thread_id) is None:
                raise DevagentError(f"thread {thread_id} has no run to abandon (state: {self.store.thread(thread_id).state})")
            dropped = [a for status in ("pending", "approved", "running")
                       for a in self.store.approvals(thread_id, status)]
            for approval in dropped:
                self.store.mark_status(thread_id, approval.call_id, "rejected")
            session = SQLiteSession(thread_id, str(self.store.sessions_path))
            answered = {_call_id(i) for i in await session.get_items() if _item_type(i) == "function_call_output"}
            unanswered = [i for i in await session.get_items()
                          if _item_type(i) == "function_call" and _call_id(i) not in answered]
            if unanswered:
                await session.add_items([{"type": "function_call_output", "call_id": _call_id(i),
                                          "output": "not run: the user abandoned this turn"} for i in unanswered])
            ws = self.workspace(thread_id)
            try:
                ws.commit_turn(f"{self.store.run(thread_id)[0]}\n\n(devagent: turn abandoned)")
            except DevagentError:
                pass  # the branch is kept as it is; `devagent diff` still shows it
            self.store.clear_run(thread_id)
            self.store.set_thread_state(thread_id, "done")
            self.store.audit(thread_id, "turn abandoned", actor="user",
                             detail={"dropped_calls": [a.call_id for a in dropped]})
            return len(dropped)

    def _start_early(self, runtime: Any) -> None:
        """Start the container in the background while the model thinks (or the saved run is
        restored) when a command is likely to run in this process: someone can approve at the
        prompt, or a call of the run is approved already. Not for a run that can only pause."""
        if not isinstance(self.approver, NoApprover) or self.store.approvals(runtime.thread_id, "approved"):
            runtime.start_in_background()

    async def _task_in_session(self, turn: _Turn) -> bool:
        """True when the conversation's last user message is this turn's task (already sent)."""
        items = await turn.session.get_items()
        users = [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
        return bool(users) and users[-1].get("content") == turn.task

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
            if self.store.run(thread_id) is None:
                self.store.set_thread_state(thread_id, "merged")
        return head

    def checkout(self, thread_id: str) -> str:
        """Bring the thread's branch into the user's repository as a local branch (no merge)."""
        thread = self.store.thread(thread_id)
        with ThreadLock(self.home, thread_id):
            ws = self.workspace(thread_id)
            ws.commit_turn("devagent: uncommitted work")
            commit = ws.checkout_to(Path(thread.repo))
        self.store.audit(thread_id, "checked out", actor="user", detail={"repo": thread.repo, "commit": commit})
        return commit

    async def undo(self, thread_id: str) -> str:
        """Reset the thread's branch to before its last turn and tell the model so. Returns the
        subject of the turn undone. Refused while a run is in progress or paused."""
        from agents import SQLiteSession

        with ThreadLock(self.home, thread_id):
            if self.store.run(thread_id) is not None:
                raise DevagentError(f"thread {thread_id} has a run in progress or paused; finish it "
                                    f"(devagent resume {thread_id}) or drop it (--abandon-turn) before undoing")
            ws = self.workspace(thread_id)
            ws.commit_turn("devagent: uncommitted work")
            undone = ws.undo_last_turn()
            session = SQLiteSession(thread_id, str(self.store.sessions_path))
            await session.add_items([{"role": "user", "content":
                                      f"(The user undid your last turn, \"{undone}\": its file changes are reverted; "
                                      "the files are as they were before it.)"}])
            self.store.audit(thread_id, "undone", actor="user", detail={"turn": undone})
            self.store.set_thread_state(thread_id, "done")
            return undone

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

    def decide(self, request: ApprovalRequest, decision: Decision, *, actor: str = "user") -> Approval | None:
        """Record a human decision on a call. Approving SQL that destroys data counts only with the
        typed names of exactly what it destroys (and is never remembered as "always"); without
        them nothing is recorded and None is returned."""
        return record_decision(self.store, request, decision, actor=actor, notice=self.events.notice,
                               save_rules=self._save_offered_rules)

    def _save_offered_rules(self, request: ApprovalRequest, scope: str) -> dict[str, Any] | None:
        """Write the rules the screen offered to the chosen file; they decide the thread's next
        calls at once (the rules are read again). A file that cannot take them approves once."""
        from devagent.policy import PolicyError, save_rule

        thread = self.store.thread(request.thread_id)
        saved = []
        try:
            for rule in request.rule_offer:
                path = save_rule(scope, rule, repo=Path(thread.repo), thread_file=self._thread_rules(thread.id))
                saved.append({"scope": scope, "file": str(path), "rule": rule.describe()})
        except PolicyError as exc:
            self.events.notice(f"approved once; the rule was not saved: {exc}")
        self._policies.pop(thread.id, None)
        for record in saved:
            self.events.notice(f"saved rule: {record['rule']} ({record['file']})")
        return {"rules_saved": saved} if saved else None

    def _thread_rules(self, thread_id: str) -> Path:
        return self.workspace(thread_id).rules_file

    def pending_requests(self, thread_id: str) -> list[ApprovalRequest]:
        self.store.requeue_interrupted(thread_id)  # what `resume` would ask again is pending now
        thread = self.store.thread(thread_id)
        return [self._request(thread, a) for a in self.store.approvals(thread_id, "pending")]

    # ------------------------------------------------------------------ the loop

    async def _drive(self, turn: _Turn, run_input: Any = None, *, blob: str | None = None) -> TurnOutcome:
        """Run (or, given a saved blob, continue) until done or paused. The container stops after."""
        from devagent.execution import current_fingerprint

        stopping = None
        try:
            if blob is not None:
                result = await self._decide_and_continue(turn, blob)
            else:
                result = await self._run_once(turn, run_input)
            while not isinstance(result, TurnOutcome) and (result is WORKSPACE_CHANGED or result.interruptions
                                                           or turn.step.ended):
                if result is not WORKSPACE_CHANGED and not result.interruptions:
                    # One step is done and the session holds it: the pause saved before it (if
                    # any) is behind the conversation now, so a crash restarts from the session.
                    self.store.save_run(turn.thread.id, turn.task, None)
                    turn.steps_left = max(0, result.max_turns - result.current_turn) \
                        if result.max_turns is not None else None
                    result = await self._run_once(turn, [])
                    continue
                if result is WORKSPACE_CHANGED:
                    # An approved call found the workspace changed since its screen: it did not
                    # run and is pending again. Ask again from the saved pause (calls that ran replay).
                    self.store.set_thread_state(turn.thread.id, "paused")
                    result = await self._decide_and_continue(turn, self.store.run(turn.thread.id)[1])
                    continue
                state = result.to_state()
                # What RunState.to_string() writes, without its indent: indented JSON goes through
                # Python's slow encoder, the compact form through the C one (the blob grows with
                # every call of the turn, and is written at every pause).
                blob = json.dumps(state.to_json())
                # Read before the store's write lock is taken: a large workspace takes a while.
                fingerprint = current_fingerprint(turn.workspace)
                with self.store.batch():  # the pause and its calls, committed together
                    self.store.save_run(turn.thread.id, turn.task, blob)
                    self.store.set_thread_state(turn.thread.id, "paused")
                    for item in result.interruptions:
                        self._record_proposed(turn, item)
                    self._note_workspace(turn.thread.id, [item.call_id for item in result.interruptions], fingerprint)
                result = await self._decide_and_continue(turn, blob, state)
            if isinstance(result, TurnOutcome):
                return result
            # Nothing runs in the container any more: it stops while the turn is committed.
            stopping = _Stopping(turn.runtime)
            return self._finish(turn, result)
        finally:
            self._active = None
            (stopping or _Stopping(turn.runtime, background=False)).wait()

    async def _decide_and_continue(self, turn: _Turn, blob: str, paused: Any = None) -> Any:
        """Ask for decisions; run again if any was made, else return the paused outcome.
        `paused`: the RunState this process paused with (then `blob` is not read back)."""
        tid = turn.thread.id
        self._apply_rules(turn.thread)
        batch = self.store.approvals(tid, "pending")
        for index, approval in enumerate(batch, 1):
            if self._decided(tid, approval.call_id):
                continue  # a rule, or an "always" answer for an earlier call of this batch, covered it
            request = self._request(turn.thread, approval)
            request.batch_index, request.batch_size = index, len(batch)
            decision = None
            for _attempt in range(CONFIRM_ATTEMPTS):
                decision = self.approver.decide(request)
                if decision is None or self.decide(request, decision) is not None:
                    break
                self.events.notice(
                    f"not approved: this SQL destroys data; approving it needs the typed names "
                    f"{', '.join(required_confirmation(request))} (and an 'always' rule never covers it)")
            if decision is None:
                break
            if decision.stop:
                self._stop_turn(turn, decision.reason)
                # The run in memory holds the agent it paused with; the stopped turn's agent (which
                # ends once the approved calls ran) takes over only through the saved run.
                paused = None
                break
            self._apply_rules(turn.thread)
        state = await self._restore(turn, blob) if paused is None else self._apply_decisions(turn, paused)
        if not any(self._decided(tid, item.call_id) for item in state.get_interruptions()):
            pending = self.pending_requests(tid)
            outcome = TurnOutcome(tid, "paused", pending=pending)
            try:
                tree: str | None = turn.workspace.snapshot()  # the files changed so far, uncommitted
            except DevagentError:
                tree = None
            self._fill_report(turn, outcome, tree)
            self.store.audit(tid, "turn paused", actor="devagent",
                             detail={"pending": [p.call_id for p in pending], "usage": outcome.usage})
            return outcome
        self.store.set_thread_state(tid, "running")
        return await self._run_once(turn, state)

    async def _run_once(self, turn: _Turn, run_input: Any) -> Any:
        from agents import ItemHelpers, RunConfig, Runner, ToolExecutionConfig
        from agents.exceptions import AgentsException, MaxTurnsExceeded

        from devagent.tools import WorkspaceChanged

        self._active = turn.runtime
        self._stop_if_aborted(turn)
        # The calls of one model response run one after another, in the order they were shown
        # for approval ("1 of 3", "2 of 3", ...): the SDK would start them all at once, and a
        # query could run before the migration it was approved after.
        config = RunConfig(tracing_disabled=True, tool_not_found_behavior="return_error_to_model",
                           tool_execution=ToolExecutionConfig(max_function_tool_concurrency=1))
        if turn.steps_left is None:
            turn.steps_left = turn.thread.settings.get("max_turns", 50)
        turn.step.ended = False
        try:
            # A paused run (RunState) keeps the step budget it started with; a new one gets what is left.
            result = Runner.run_streamed(turn.agent, run_input, session=turn.session,
                                         max_turns=turn.steps_left, run_config=config)
            calls: dict[str, tuple[str, str]] = {}  # call id -> (tool, arguments), for file edits
            async for event in result.stream_events():
                if event.type != "run_item_stream_event":
                    continue
                item = event.item
                if event.name == "tool_called":
                    raw = item.raw_item
                    self._note_unknown_tool(turn, raw)
                    name, arguments = getattr(raw, "name", "?"), getattr(raw, "arguments", "") or ""
                    calls[getattr(raw, "call_id", "") or ""] = (name, arguments)
                    self.events.tool_call(name, arguments, call_id=getattr(raw, "call_id", "") or "")
                elif event.name == "tool_output":
                    raw = item.raw_item
                    name = raw.get("name", "") if isinstance(raw, dict) else getattr(raw, "name", "")
                    call_id = raw.get("call_id", "") if isinstance(raw, dict) else getattr(raw, "call_id", "")
                    if not name:  # a function_call_output names no tool: the call does
                        known = calls.get(call_id or "") or self.store.approval(turn.thread.id, call_id or "")
                        name = known[0] if isinstance(known, tuple) else getattr(known, "tool", "")
                    self._note_file_edit(turn, call_id or "", calls.get(call_id or ""), str(item.output))
                    self.events.tool_result(name or "tool", str(item.output), call_id=call_id or "")
                elif event.name == "message_output_created":
                    text = ItemHelpers.text_message_output(item)
                    self.store.audit(turn.thread.id, "message", actor="model", detail={"text": text})
                    self.events.assistant_message(text)
            self._stop_if_aborted(turn)
            return result
        except WorkspaceChanged:
            return WORKSPACE_CHANGED
        except MaxTurnsExceeded:
            self._checkpoint(turn)
            self._end_turn(turn)  # continuing is a new task on the thread (its memory is kept)
            raise DevagentError(
                f"the agent used its {turn.thread.settings.get('max_turns')} steps; work so far is committed on "
                f"{turn.workspace.branch}. Continue with: devagent task --thread {turn.thread.id} \"continue\" "
                "(raise --max-steps for long tasks)"
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
                tid = turn.thread.id
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                where = turn.thread.settings.get("base_url") or "https://api.openai.com/v1 (the OpenAI API)"
                error = f"model API error ({type(exc).__name__}) from {where}: {first}"
                # `threads` says why the thread stopped; the next successful turn clears it.
                self.update_thread(tid, last_error=error)
                self.store.set_thread_state(tid, "failed")
                raise DevagentError(
                    f"{error}; the thread is saved: retry with `devagent resume {tid}` "
                    f"(or another server: `devagent resume {tid} --base-url URL --model NAME`)"
                ) from None
            raise

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _stop_if_aborted(turn: _Turn) -> None:
        """After Ctrl-C nothing of the turn goes on: a step that ended anyway (the SDK lets a tool
        it was running finish) neither drops the saved pause nor starts the next step."""
        if turn.runtime.aborted:
            import asyncio

            raise asyncio.CancelledError

    def _command_started(self, call_id: str, command: str) -> None:
        started = getattr(self.events, "command_started", None)  # optional for a watcher
        if started is not None:
            started(call_id, command)

    def _sandbox(self, thread_id: str) -> _Sandbox:
        """The thread's checkout, container and tool runtime: everything of a turn but the agent
        (so without importing the agent SDK; the container can start while it is imported)."""
        from devagent.execution import ToolRuntime

        thread = self.store.thread(thread_id)
        ws = self.workspace(thread_id)
        if not ws.git_dir.is_dir():
            raise StateCorrupted(f"the checkout of thread {thread_id} is missing ({ws.root}); discard the thread")
        settings = thread.settings
        sandbox = settings.get("sandbox") or {}
        # `sandbox.env` names variables; their values are the host's at each turn (absent: not passed).
        passed = tuple((name, os.environ[name]) for name in sandbox.get("env") or () if name in os.environ)
        spec = ContainerSpec(thread_id, ws.work_dir, ws.git_dir, network=bool(settings.get("network")),
                             limits=thread_limits(settings), env=passed,
                             ca_certificates=tuple(sandbox.get("ca_certificates") or ()), proxy=sandbox.get("proxy"))
        container = ThreadContainer(self.docker(), spec)
        runtime = ToolRuntime(thread_id=thread_id, store=self.store, workspace=ws, container=container,
                              network=spec.network, sandbox_owner=sandbox_user(),
                              on_output=self.events.command_output, on_activity=self.events.activity,
                              on_command=self._command_started)
        database = attach_migrations(runtime, settings)
        return _Sandbox(thread, ws, runtime, database)

    def _prepare(self, thread_id: str, task: str, sandbox: _Sandbox | None = None) -> _Turn:
        """`sandbox`: what `_sandbox` made for this turn already (else it is made here)."""
        from agents import SQLiteSession

        from devagent.agent import ModelChoice, ThreadModel, build_agent  # the agent SDK: imported when a turn runs
        from devagent.tools import build_tools

        sandbox = sandbox or self._sandbox(thread_id)
        thread, ws, runtime = sandbox.thread, sandbox.workspace, sandbox.runtime
        settings = thread.settings
        model = ThreadModel(self.model_override or ModelChoice(settings["model"], settings.get("base_url")).build(),
                            on_usage=lambda usage: self.store.audit(thread_id, "usage", actor="model",
                                                                    detail={"model": settings["model"],
                                                                            **dataclasses.asdict(usage)}),
                            on_activity=self.events.activity,
                            on_calls=lambda calls: setattr(runtime, "response_calls", calls))
        files = project_instruction_files(ws.work_dir)
        extra = settings.get("extra_instructions") or {}
        if extra.get("text"):
            files.append(InstructionFile(extra["label"], "", extra["text"]))
        step = _StepEnd()
        agent = build_agent(build_tools(runtime), model, network=runtime.network, database=sandbox.database,
                            project_instructions=instructions_block(files)).clone(tool_use_behavior=step)
        session = SQLiteSession(thread_id, str(self.store.sessions_path))
        self.store.set_thread_state(thread_id, "running")
        if settings.get("last_error"):
            self.update_thread(thread_id, last_error="")
        return _Turn(thread, ws, agent, session, runtime, task, [f.label for f in files], step)

    def _request(self, thread: Thread, approval: Any, *, screen: bool = True) -> ApprovalRequest:
        """The call's screen (`execution.screened_request`), with the rules `a` would offer."""
        from devagent.execution import screened_request

        request = screened_request(self.store, thread, approval, self.workspace(thread.id), screen=screen)
        if request.tool == "run_shell" and request.command is not None and not request.error:
            request.rule_offer, request.rule_note = self._offer(thread, request)
        return request

    def _offer(self, thread: Thread, request: ApprovalRequest) -> tuple[list[Any], str | None]:
        """The rules `a` offers for a command (none for a migration tool: rules never approve one)."""
        from devagent.policy import PolicyError, offer_rules

        if request.migration_runner is not None:
            return [], "a migration tool is never approved by a rule"
        try:
            if thread.id not in self._policies:
                self._load_rules(thread.id)
            policy = self._policies.get(thread.id)
        except PolicyError:
            policy = None
        return offer_rules(request.command or "", policy)

    def _note_workspace(self, thread_id: str, call_ids: list[str], fingerprint: str) -> None:
        """The state of the workspace when calls are proposed: what a rule's approval binds."""
        from devagent.execution import record_seen

        for call_id in call_ids:
            record_seen(self.store, thread_id, call_id, fingerprint)

    def _apply_rules(self, thread: Thread) -> None:
        """Decide what rules decide among the pending calls, in this order: a `forbid` rule refuses
        and a `prompt` rule keeps the call for a human (both from the rule files, so a per-thread
        "always" answer can never override them); then an "approve always" rule of this thread
        that covers the call exactly; then the `allow` rules.

        SQL that destroys data is never covered, whatever rule exists: a rule may have been made
        for the same call when its file held harmless SQL. (The migration tool checks again.)"""
        from devagent.approvals import detect_migration_runner

        if thread.id not in self._policies:
            self._load_rules(thread.id)
        policy = self._policies[thread.id]
        for approval in self.store.approvals(thread.id, "pending"):
            command, verdict = self._command_verdict(thread, approval, policy)
            if verdict is not None and verdict.decision == "forbid" and verdict.rule is not None:
                rule = verdict.rule
                reason = f"forbidden by rule {rule.where} ({rule.pattern_text()}): {rule.reason or 'no reason given'}"
                self.store.decide(thread.id, approval.call_id, "rejected", actor=f"rule {rule.where}",
                                  reason=reason, detail={"rules": [_rule_record(rule)]})
                self.events.notice(f"refused by rule {rule.where}: {command}")
                continue
            held = verdict is not None and verdict.rule is not None and verdict.rule.decision == "prompt"
            if self.store.has_rule(thread.id, approval.tool, approval.arguments):
                if held:
                    self.events.notice(f"not covered by your 'always' rule: call {approval.call_id} is asked every "
                                       f"time by rule {verdict.rule.where}")  # type: ignore[union-attr]
                    continue
                if required_confirmation(self._request(thread, approval, screen=False)):
                    self.events.notice(f"not covered by your 'always' rule: call {approval.call_id} destroys data")
                    continue
                self.store.decide(thread.id, approval.call_id, "approved", actor="rule (approve always)")
                self.events.approved_by_rule(approval.call_id, approval.tool, approval.arguments)
                continue
            if verdict is not None and verdict.decision == "allow" and detect_migration_runner(command) is None:
                rules = verdict.allow_rules
                where = ", ".join(r.where for r in rules)
                self.store.decide(thread.id, approval.call_id, "approved", actor=f"rule {where}",
                                  detail={"rules": [_rule_record(r) for r in rules]})
                if all(r.scope == "thread" for r in rules):  # what `a` saved for this thread
                    self.events.approved_by_rule(approval.call_id, approval.tool, approval.arguments)
                else:
                    self.events.notice(f"approved by rule {where}: {command}")

    def _command_verdict(self, thread: Thread, approval: Any, policy: Any) -> tuple[str, Any]:
        """The command rules' verdict on a run_shell call (None for other tools, which command
        rules never cover, and for calls that cannot run as shown: a human sees why)."""
        from devagent.approvals import read_shell_call

        if approval.tool != "run_shell":
            return "", None
        call = read_shell_call(approval.arguments, thread_limits(thread.settings).default_timeout_s)
        if call.error:
            return "", None
        return call.command, policy.decide(call.command)

    def _record_proposed(self, turn: _Turn, item: Any) -> None:
        """Record a call that waits for approval as pending; one that cannot run at all (arguments
        that are not JSON, no command, ...) is refused at once: the model is told why, the log
        says so, and no human is asked to approve something that cannot run."""
        tid, arguments = turn.thread.id, item.arguments or ""
        # A path migration's file content is bound now, before anyone is shown it.
        bind_proposed_sql(turn.runtime, item.call_id, item.name, arguments)
        if self.store.approval(tid, item.call_id) is None:
            probe = Approval(tid, item.call_id, item.name, arguments, sha256_text(arguments), "pending",
                             None, None, 0.0, None)
            error = self._request(turn.thread, probe, screen=False).error
            if error:
                self.store.add_refused(tid, item.call_id, item.name, arguments, error)
                self.events.notice(f"refused without asking ({item.name} {item.call_id}): {error}")
                return
        self.store.add_pending(tid, item.call_id, item.name, arguments)

    def _note_file_edit(self, turn: _Turn, call_id: str, call: tuple[str, str] | None, output: str) -> None:
        """A file the model wrote or edited goes in the log (the commit has its content)."""
        if call is None or call[0] not in ("write_file", "edit_file"):
            return
        if not output.startswith(("wrote ", "edited ")):  # what the tools say when they did it
            return
        from devagent.approvals import parse_arguments

        args, _error = parse_arguments(call[1])
        path = args.get("path")
        if isinstance(path, str):
            detail: dict[str, Any] = {"path": path}
            if call[0] == "write_file" and isinstance(args.get("content"), str):
                detail["bytes"] = len(args["content"].encode("utf-8", "surrogatepass"))
            self.store.audit(turn.thread.id, "file changed", call_id=call_id, tool=call[0], actor="model",
                             detail=detail)

    def _note_unknown_tool(self, turn: _Turn, raw: Any) -> None:
        """The SDK tells the model that a tool does not exist; the log says so too."""
        name = getattr(raw, "name", None)
        if isinstance(name, str) and name not in {tool.name for tool in turn.agent.tools}:
            self.store.audit(turn.thread.id, "refused", call_id=getattr(raw, "call_id", None), tool=name,
                             actor="devagent", detail={"arguments": getattr(raw, "arguments", "") or "",
                                                       "reason": f"there is no tool named {name!r}; the model was told so"})

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
        self.store.requeue_interrupted(thread_id, locked=True)  # the caller holds the thread's lock

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
        return self._apply_decisions(turn, state)

    def _apply_decisions(self, turn: _Turn, state: Any) -> Any:
        """Approve or reject the paused calls of `state` as the store says, refusing any call the
        store does not hold with exactly these arguments."""
        tid = turn.thread.id
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
            self.events.known_call(item.call_id, item.name, item.arguments or "")
            if row.status in ("approved", "rejected", "refused"):
                self.events.decision_applied(row)
            if row.status in ("approved", "done"):
                state.approve(item)
            elif row.status == "rejected":
                state.reject(item, rejection_message=f"The user rejected this call. Reason: {row.reason or '(none given)'}")
            elif row.status == "refused":
                state.reject(item, rejection_message=f"error: {row.reason}. Nothing ran; send a corrected call.")
        return state

    def _check_blob_decisions(self, thread_id: str, context: dict[str, Any]) -> None:
        """Decisions a saved blob carries (from earlier resumes) must all be in the store."""
        records = list((context.get("approvals") or {}).values())
        records += [entry.get("decision") or {} for entry in context.get("function_tool_approvals") or []]
        tampered = bool(context.get("hosted_mcp_approvals"))
        for record in records:
            for kind, allowed in (("approved", ("approved", "running", "done")), ("rejected", ("rejected", "refused"))):
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

    # ------------------------------------------------------------------ command rules (policy)

    def _load_rules(self, thread_id: str) -> None:
        """Read the rule files once per turn, from the user's checkout (never the thread's workspace),
        and record which files (path + sha256) the turn runs under when that changed."""
        thread = self.store.thread(thread_id)
        from devagent.policy import load_policy

        policy = load_policy(Path(thread.repo), thread_file=self._thread_rules(thread_id))
        self._policies[thread_id] = policy
        files = [f.to_json() for f in policy.files]
        recorded = self.store.last_event(thread_id, "rules")
        if files and (recorded is None or recorded["detail"].get("files") != files):
            self.store.audit(thread_id, "rules", actor="devagent", detail={"files": files, "presets": policy.presets})

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
        for nested in turn.workspace.nested_repositories():
            self.events.notice(f"{nested}/ is a git repository inside the workspace: not committed with the "
                               "thread (its files stay in the checkout; remove its .git to commit them)")
        diffstat = turn.workspace.diffstat(commit) if commit else ""  # capped: ~20 files, then a count
        limits = turn.thread.settings.get("commit") or {}
        warning = turn.workspace.size_warning(
            commit, max_files=limits.get("warn_files") or TURN_WARN_FILES,
            max_bytes=int((limits.get("warn_mb") or TURN_WARN_BYTES / 1e6) * 1e6)) if commit else None
        self._end_turn(turn)
        final = str(result.final_output or "")
        outcome = TurnOutcome(tid, "done", final_output=final, commit=commit, diffstat=diffstat.strip("\n"),
                              note=warning)
        self._fill_report(turn, outcome, commit)
        self.store.audit(tid, "turn finished", actor="devagent",
                         detail={"commit": commit, "usage": outcome.usage, "warning": warning,
                                 "final_output": final, "changed_files": outcome.changed_files})
        return outcome

    def _fill_report(self, turn: _Turn, outcome: TurnOutcome, tree: str | None) -> None:
        """What ran this turn, the files it changed (up to `tree`) and its token usage."""
        from devagent.config import load_prices
        from devagent.usage import priced_total

        tid = turn.thread.id
        # Keyed reads, not a scan of the whole log: the turn's events start at its task.
        task = self.store.last_event(tid, "task")
        events = self.store.events_since(tid, task["id"] if task else 0, ("executing", "executed", "usage"))
        started = {e["call_id"]: e["detail"] for e in events if e["event"] == "executing"}
        executed = [e for e in events if e["event"] == "executed"]
        outcome.commands = [{"call_id": e["call_id"], "tool": e["tool"],
                             "command": _command_text(e["tool"], started.get(e["call_id"]) or {}),
                             "exit_code": e["exit_code"], "duration_s": e["duration_s"],
                             "timed_out": bool(e["detail"].get("timed_out"))} for e in executed]
        outcome.commands_run = len(executed)
        outcome.commands_failed = sum(1 for e in executed if e["exit_code"] != 0)  # None: timed out
        try:
            prices = load_prices(Path(turn.thread.repo))
        except ConfigError as exc:
            self.events.notice(f"no cost estimate: {exc}")
            prices = {}
        model = turn.thread.settings.get("model")
        records = [e["detail"] for e in events if e["event"] == "usage"]
        every = [e["detail"] for e in self.store.events_since(tid, 0, ("usage",))]
        outcome.usage = priced_total(records, prices, model)
        outcome.thread_usage = priced_total(every, prices, model)
        head = task["detail"].get("head") if task else None
        if tree:
            try:
                base = head or turn.workspace.git("rev-parse", f"{tree}^").strip()
                outcome.changed_files = turn.workspace.changed_between(base, tree)
            except DevagentError:
                outcome.changed_files = []  # a first commit, or git trouble: the diff still shows it


class _Stopping:
    """The container's stop at the end of a turn, in the background (while the turn is committed
    and reported) or at once; `wait` returns when it is stopped, raising what the stop raised."""

    def __init__(self, runtime: Any, *, background: bool = True) -> None:
        self.runtime = runtime
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._stop, name="devagent-sandbox-stop", daemon=True) \
            if background else None
        if self.thread is not None:
            self.thread.start()

    def _stop(self) -> None:
        try:
            self.runtime.settle()  # a start still under way would leave the container running
            self.runtime.container.stop()
        except BaseException as exc:  # noqa: BLE001 - handed to wait()
            self.error = exc

    def wait(self) -> None:
        if self.thread is None:
            self._stop()
        else:
            self.thread.join()
        if self.error is not None:
            raise self.error


def _command_text(tool: str | None, started: dict[str, Any]) -> str:
    """What a call ran, as the log recorded it when it started."""
    if tool == "run_migration":
        return "SQL " + str(started.get("path") or f"sha256 {str(started.get('sha256', ''))[:12]}")
    return str(started.get("command") or "")


def _item_type(item: Any) -> str | None:
    return item.get("type") if isinstance(item, dict) else getattr(item, "type", None)


def _call_id(item: Any) -> str | None:
    return item.get("call_id") if isinstance(item, dict) else getattr(item, "call_id", None)


def _rule_record(rule: Any) -> dict[str, Any]:
    """What the audit log keeps of a rule that decided a call."""
    return {"id": rule.id, "where": rule.where, "decision": rule.decision, "pattern": rule.pattern_text(),
            "file": rule.path, "file_sha256": rule.file_sha256}


__all__ = ["ThreadRunner", "TaskOptions", "TurnOutcome", "Decision", "Approver", "TurnEvents", "NoApprover"]
