"""The `devagent` command line: parsing, rendering, prompting. No business logic lives here.

Heavy modules (the agent SDK, docker, the runner, rich) are imported inside the commands that
need them, so the commands that do not run the agent start fast (tests/test_cli_startup.py).

No `from __future__ import annotations` here: typer would evaluate every command's annotations
from strings at each start, which costs more than building all the commands otherwise does.
"""

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from devagent.errors import DevagentError
from devagent.words import count

EXIT_DONE, EXIT_ERROR, EXIT_USAGE, EXIT_PAUSED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _keep_argument_help() -> None:
    """Click 8.5's Argument takes a `help` of its own and sets it to None when typer does not pass
    it, so every argument's description vanished from --help. Hand typer's help on to click; and
    since click then lists the arguments itself too, leave that list to typer (printed once)."""
    from typer.core import TyperArgument, TyperCommand, TyperGroup

    for command in (TyperCommand, TyperGroup):
        command.format_arguments = lambda self, ctx, formatter: None  # type: ignore[method-assign]

    if getattr(TyperArgument, "_devagent_keeps_help", False):
        return
    original = TyperArgument.__init__

    def init(self: Any, *args: Any, help: str | None = None, **kwargs: Any) -> None:  # noqa: A002
        original(self, *args, help=help, **kwargs)
        self.help = help

    TyperArgument.__init__ = init  # type: ignore[method-assign]
    TyperArgument._devagent_keeps_help = True  # type: ignore[attr-defined]


_keep_argument_help()

app = typer.Typer(
    help="A sandboxed DevOps agent: every shell command and migration waits for your approval "
    "of exactly what will run.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sandbox_app = typer.Typer(help="Build the sandbox image and diagnose Docker.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")

_debug = False
_stream: Any = None  # the JSON event stream of `task --json` / `resume --json` (devagent.events)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        _say(f"devagent {version('devagent')}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    _show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
) -> None:
    global _debug
    _debug = debug


# ---------------------------------------------------------------------------- helpers


def _screen(stderr: bool = False) -> Any:
    """Where output goes: every string is escaped on the way (see devagent.term)."""
    from devagent.term import Screen

    return Screen(stderr=stderr)


def _say(*parts: Any, stderr: bool = False, style: str = "") -> None:
    """One message line; every part (a string, or a (string, style) pair) is escaped."""
    from devagent.term import shown

    _screen(stderr).print(shown(*parts, style=style))


def _store() -> Any:
    from devagent.config import devagent_home
    from devagent.store import Store

    return Store(devagent_home())


def _thread_id(store: Any, given: str | None, *, required: bool = False) -> str:
    """The thread meant: `given` as an id or a unique prefix of one; else (where allowed) the most
    recent thread of the repository you are in, which is named on stderr."""
    if given:
        return store.find_thread(given).id
    from devagent.errors import UsageError

    if required:
        raise UsageError("name the thread: its id, or a unique prefix of it (see `devagent threads`)")
    here = _current_repo()
    mine = [t for t in store.threads() if here is not None and Path(t.repo) == here]
    if not mine:
        raise UsageError("no thread of this repository to pick; name one (see `devagent threads --all`)")
    _say(f"thread {mine[0].id} (the most recent of {here})", stderr=True)
    return mine[0].id


def _current_repo() -> Path | None:
    """The top of the git work tree you are in (plain git, nothing of yours runs)."""
    return _current_repo_soon()()


def _current_repo_soon() -> Callable[[], Path | None]:
    """Start `_current_repo`'s git; the function returned waits for its answer (meanwhile the
    caller reads the store)."""
    import subprocess

    git = subprocess.Popen(["git", "-c", "core.fsmonitor=false", "rev-parse", "--show-toplevel"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)

    def answer() -> Path | None:
        out, _ = git.communicate()
        return Path(out.strip()).resolve() if git.returncode == 0 and out.strip() else None

    return answer


OPTIONAL_ID = "The thread's id or a unique prefix (default: the most recent thread of this repository)."


def _interactive(no_input: bool) -> bool:
    return not no_input and sys.stdin.isatty()


def _emit_json(data: Any) -> None:
    from devagent.term import emit_json

    emit_json(data)


def _start_stream(as_json: bool) -> None:
    """With --json, stdout carries JSON Lines only, from here on (errors too: see main)."""
    global _stream
    if as_json:
        from devagent.events import JsonEvents, JsonLines
        from devagent.term import emit_json_line

        _stream = JsonEvents(JsonLines(emit_json_line))


def _runner(interactive: bool, as_json: bool) -> Any:
    from devagent.runner import NoApprover, ThreadRunner
    from devagent.ui import ConsoleEvents, TerminalApprover

    progress = _screen(stderr=as_json)
    approver = TerminalApprover(progress) if interactive else NoApprover()
    store = _store()
    events: Any = ConsoleEvents(progress)
    if as_json and _stream is not None:
        from devagent.events import Fanout

        events = Fanout(events, _stream)
        store.listeners.append(_stream.audit)
    runner = ThreadRunner(store, events=events, approver=approver)
    if interactive:
        approver.diff = lambda request: _diff_since_last_command(runner, request.thread_id)
    return runner


def _diff_since_last_command(runner: Any, thread_id: str) -> str:
    """The diff behind "files changed since the last command" (the approval screen's `d`)."""
    ws = runner.workspace(thread_id)
    last = runner.store.exec_tree(thread_id) or ws.git("rev-parse", f"{ws.base_commit}^{{tree}}").strip()
    return ws.git("diff", "--no-ext-diff", "--no-textconv", "--no-renames", last, ws.snapshot())


def _run_turn(runner: Any, thread_id: str, coro_factory: Any) -> Any:
    """Run a turn; Ctrl-C or SIGTERM kills the running command, keeps the saved state, exits 130."""
    import asyncio
    import signal

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Not asyncio.run(): its SIGINT handler only cancels the task, which a blocking approval
    # prompt would not notice; here Ctrl-C interrupts the prompt at once.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro_factory())
    except KeyboardInterrupt:
        runner.events.activity(None)
        runner.abort()
        # Let the turn unwind (its finally blocks stop the container) before exiting 130.
        tasks = asyncio.all_tasks(loop)
        for pending_task in tasks:
            pending_task.cancel()
        try:
            loop.run_until_complete(asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30))
        except BaseException:
            pass
        _say("", stderr=True)  # off the line the interrupted prompt or output was on
        _say("interrupted; nothing is lost: continue with ", f"`devagent resume {thread_id}`", stderr=True)
        if _stream is not None:
            _stream.error(f"interrupted; continue with `devagent resume {thread_id}`", EXIT_INTERRUPTED)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        runner.events.activity(None)  # the status line never outlives the turn
        loop.close()


def _report(outcome: Any, as_json: bool) -> None:
    """Print how the turn ended; exit 3 when it is paused for approval."""
    from devagent.term import shown, shown_lines

    if as_json and _stream is not None:
        _stream.turn_ended(outcome)
    else:
        screen = _screen()
        if outcome.status == "paused":
            from devagent.ui import pending_screens

            screen.print(*pending_screens(outcome.pending, expand=screen.wraps))
            from devagent.decisions import required_confirmation

            tid = outcome.thread_id
            n = len(outcome.pending)
            lines = [f"thread {tid} is paused: {count(n, 'call')} {'waits' if n == 1 else 'wait'} for approval.",
                     f"  devagent approve {tid} --all"]
            for req in outcome.pending:
                required = required_confirmation(req)
                if required:  # `--all` leaves these pending: the exact command that approves each
                    lines += _fitted([f"  {_confirm_command(tid, req.call_id, required)}",
                                      f"(destroys data: {', '.join(required)})"], "   ", screen, indent="    ")
            lines += [f"  devagent reject {tid} CALL_ID --reason \"...\"", f"  devagent resume {tid}"]
            screen.print(shown_lines(lines))
            for line in usage_lines(outcome):
                screen.print(shown(line, style="dim"))
        else:
            from devagent.runner import STOPPED_BY_USER

            ended = "stopped" if outcome.final_output == STOPPED_BY_USER else "done"
            summary = f"thread {outcome.thread_id} {ended}: {count(outcome.commands_run, 'command')} run"
            summary += f" ({outcome.commands_failed} failed)" if outcome.commands_failed else ""
            committed = (f"committed {outcome.commit[:10]} on devagent/{outcome.thread_id}" if outcome.commit
                         else "no file changes")
            screen.print(shown_lines(_fitted([summary, committed], ", ", screen), style="bold green"))
            for line in usage_lines(outcome):
                screen.print(shown(line, style="dim"))
            if outcome.diffstat:
                screen.print(shown_lines(outcome.diffstat.split("\n"), style="dim"))
            if outcome.note:
                screen.print(shown_lines(outcome.note.split("\n"), style="bold yellow"))
            if outcome.commit:
                hints = [f"review: devagent diff {outcome.thread_id}", f"merge: devagent apply {outcome.thread_id}"]
                screen.print(shown_lines(_fitted(hints, "   ", screen, indent=""), style="dim"))
    if outcome.status == "paused":
        raise typer.Exit(EXIT_PAUSED)


def _fitted(pieces: list[str], separator: str, screen: Any, indent: str = "  ") -> list[str]:
    """Our own pieces of a message on one line when it fits the terminal, else each on a short line
    of its own (the later ones indented): a summary or hint never wraps mid-word at 60 columns."""
    from devagent.term import shown

    joined = separator.join(pieces)
    if not screen.wraps or shown(joined).cell_len <= screen.width:
        return [joined]
    return [pieces[0], *(indent + piece for piece in pieces[1:])]


def usage_lines(outcome: Any) -> list[str]:
    """`tokens: 2,400 in (2,000 cached) · 68 out (14 reasoning) · 2 model requests` for the turn,
    then the thread's total when it has had other turns; a cost only where prices are configured."""
    from devagent.usage import usage_line

    lines = []
    if outcome.usage:
        lines.append("tokens: " + usage_line(outcome.usage, outcome.usage.get("cost_usd")))
    total = outcome.thread_usage
    if total and total.get("requests") != outcome.usage.get("requests"):
        lines.append("thread so far: " + usage_line(total, total.get("cost_usd")))
    return lines


# ---------------------------------------------------------------------------- agent commands


@app.command()
def task(
    text: str = typer.Argument(..., help="What you want done."),
    thread: Optional[str] = typer.Option(None, "--thread", metavar="ID",
                                         help="Continue this thread (its id or a unique prefix) instead of starting one."),
    repo: Path = typer.Option(Path("."), "--repo", help="The git repository to work on (new threads)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (default: $DEVAGENT_MODEL or gpt-4.1)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (Chat Completions)."),
    network: Optional[bool] = typer.Option(None, "--network/--no-network",
                                           help="Give the sandbox network access (default: off)."),
    database: Optional[str] = typer.Option(None, "--database", help="sqlite (default), postgres, or a database URL."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", "--max-turns", min=1, metavar="N",
                                            help="Model round trips (steps) allowed in this turn (default 50; "
                                                 "--max-turns is its older name)."),
    no_input: bool = typer.Option(False, "--no-input", help="Never prompt: pause at the first approval (exit 3)."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout as the run goes, one event per line, ending with a summary (see the README)."),
    instructions: Optional[Path] = typer.Option(
        None, "--instructions", metavar="FILE",
        help="More instructions for this task, added to the repository's AGENTS.md files."),
    include_uncommitted: bool = typer.Option(
        False, "--include-uncommitted",
        help="Start the new thread from your working tree: modified and untracked (not ignored) files "
             "become its first commit. Default: from HEAD, saying what was left out."),
) -> None:
    """Start a thread (prints its id) or continue one with --thread, and run one turn of the agent.

    \b
    Examples:
      devagent task "make the tests pass"
      devagent task "add an index on users.email" --database postgres
      devagent task "upgrade the lockfile" --network --no-input --json   # CI: exits 3 when paused
      devagent task --thread 3f9c2a1b "now update the changelog"
    """
    from devagent.instructions import extra_instructions
    from devagent.runner import TaskOptions

    _start_stream(as_json)
    extra = extra_instructions(instructions) if instructions else None  # a bad file fails before anything starts
    runner = _runner(_interactive(no_input), as_json)
    new_thread = thread is None
    if thread is None:
        options = TaskOptions(model=model, base_url=base_url, network=network, database=database,
                              max_steps=max_steps, include_uncommitted=include_uncommitted)
        created = runner.create_thread(repo, options)
        thread = created.id
        _say(f"thread {thread} on branch devagent/{thread}", stderr=True, style="bold")
        _say_uncommitted(Path(created.repo), include_uncommitted)
    else:
        thread = _thread_id(runner.store, thread)  # a unique prefix is enough
        # The sandbox (network, database) is the thread's for good; the model settings may change.
        runner.update_thread(thread, model=model, base_url=base_url, max_turns=max_steps)
    if _stream is not None:
        info = runner.store.thread(thread)
        _stream.thread_started(thread, info.branch, info.repo, resumed=False, new=new_thread)
    outcome = _run_turn(runner, thread, lambda: runner.run_task(thread, text, extra))
    _report(outcome, as_json)


def _say_uncommitted(repo: Path, included: bool) -> None:
    """One line on what of the user's working tree the new thread has (or has not)."""
    from devagent.workspace import uncommitted_changes

    kinds = [kind for _path, kind in uncommitted_changes(repo)]
    if not kinds:
        return
    files = "file" if len(kinds) == 1 else "files"
    counts = f"{kinds.count('modified')} modified and {kinds.count('untracked')} untracked {files}"
    if included:
        _say(f"{counts} of your working tree are the thread's first commit (--include-uncommitted)", stderr=True)
    else:
        _say(f"{counts} in {repo} are not in the thread (it starts from HEAD); "
             "pass --include-uncommitted to start from your working tree", stderr=True)


@app.command()
def resume(
    thread_id: Optional[str] = typer.Argument(None, metavar="[ID]", help=OPTIONAL_ID),
    no_input: bool = typer.Option(False, "--no-input", help="Never prompt: stop again at an undecided approval."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout as the run goes, one event per line, ending with a summary (see the README)."),
    model: Optional[str] = typer.Option(None, "--model", help="Continue with this model (default: the thread's)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Continue with this OpenAI-compatible server."),
    abandon_turn: bool = typer.Option(
        False, "--abandon-turn",
        help="Drop the paused or failed run instead (its pending calls are not run); the branch and "
             "the conversation are kept and the thread takes a new task."),
) -> None:
    """Resume a paused thread with the decisions recorded so far."""
    _start_stream(as_json)
    thread_id = _thread_id(_store(), thread_id)
    runner = _runner(_interactive(no_input), as_json)
    if _stream is not None:
        info = runner.store.thread(thread_id)
        _stream.thread_started(thread_id, info.branch, info.repo, resumed=True)
    if abandon_turn:
        import asyncio

        dropped = asyncio.run(runner.abandon_turn(thread_id))
        message = (f"dropped the run of thread {thread_id} ({count(dropped, 'pending call')} not run); "
                   f"the branch is kept. Next: devagent task --thread {thread_id} \"...\"")
        if _stream is not None:
            _stream.out.emit("summary", status="abandoned", dropped_calls=dropped, message=message)
        else:
            _say(message)
        return
    import os

    # Flags, else the environment as `task` reads it, else the thread's saved choice.
    runner.update_thread(thread_id, model=model or os.environ.get("DEVAGENT_MODEL"),
                         base_url=base_url or os.environ.get("OPENAI_BASE_URL"))
    outcome = _run_turn(runner, thread_id, lambda: runner.resume(thread_id))
    _report(outcome, as_json)


@app.command()
def pending(
    thread_id: Optional[str] = typer.Argument(None, metavar="[ID]",
                                              help="The thread's id or a unique prefix (default: every thread)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output: one object per call."),
) -> None:
    """List pending approvals: call id, tool, the exact command or SQL."""
    store = _store()
    thread_ids = [_thread_id(store, thread_id)] if thread_id else [t.id for t in store.threads()]
    requests = [req for tid in thread_ids for req in _pending_requests(store, tid)]
    if as_json:
        _emit_json([r.to_json() for r in requests])
        return
    if not requests:
        _say("no pending approvals")
        return
    from devagent.ui import pending_screens

    screen = _screen()
    screen.print(*pending_screens(requests, expand=screen.wraps))


@app.command()
def approve(
    thread_id: str = typer.Argument(..., metavar="ID", help="The thread's id or a unique prefix."),
    call_ids: list[str] = typer.Argument(None, metavar="[CALL_ID ...]",
                                         help="The calls to approve, as `devagent pending` lists them."),
    all_: bool = typer.Option(False, "--all", help="Approve every pending call of the thread (SQL that destroys data stays pending: it needs --confirm)."),
    always: bool = typer.Option(False, "--always", help="Also approve these exact calls in future turns of this thread (never SQL that destroys data)."),
    confirm: list[str] = typer.Option(None, "--confirm", metavar="NAME",
                                      help="For SQL that destroys data: the name of what it destroys, as `approve --all` or the screen names it; once per object. Needs exactly one CALL_ID."),
) -> None:
    """Approve some or all pending calls of a paused thread (then `devagent resume`).

    Exits 3 when calls stay pending because they destroy data and need --confirm."""
    from devagent.decisions import Decision, record_decision, required_confirmation
    from devagent.errors import UsageError

    store = _store()
    thread_id = _thread_id(store, thread_id, required=True)
    typed = tuple(word.strip() for word in confirm or ())
    store.requeue_interrupted(thread_id)  # a call interrupted mid-run is pending, as resume sees it
    pending_ids = [a.call_id for a in store.approvals(thread_id, "pending")]
    targets = pending_ids if all_ else list(call_ids or [])
    if not targets:
        raise DevagentError("name the calls to approve, or pass --all" if pending_ids else f"thread {thread_id} has no pending approvals")
    if typed and (all_ or len(targets) != 1):
        raise UsageError("--confirm names what one call destroys: give exactly one CALL_ID (not --all)")
    requests = [_call_request(store, thread_id, call_id) for call_id in targets]
    if typed:
        _check_confirmation(requests[0], typed)
    unconfirmed = []
    for req in requests:
        required = required_confirmation(req)
        if required and not typed:
            unconfirmed.append((req, required))
            continue
        record_decision(store, req, Decision(True, always=always, confirmed=typed))
        note = " (once: SQL that destroys data is never approved 'always')" if required and always else ""
        _say(f"approved {req.call_id}{note}")
    for req, required in unconfirmed:
        _say(f"still pending: {req.call_id} destroys data ({', '.join(required)}); "
             f"approve it with: {_confirm_command(thread_id, req.call_id, required)}")
    if len(unconfirmed) < len(requests):
        _say(f"now run: devagent resume {thread_id}")
    if unconfirmed:
        raise typer.Exit(EXIT_PAUSED)


def _pending_requests(store: Any, thread_id: str) -> list[Any]:
    """The thread's pending calls as their screens show them (a call interrupted mid-run is
    pending, as `resume` would ask it again). Showing them binds their approvals to the workspace
    they were shown with. From the store and the checkout alone: no runner, no sandbox."""
    from devagent.execution import screened_request
    from devagent.workspace import ThreadWorkspace

    store.requeue_interrupted(thread_id)
    thread = store.thread(thread_id)
    workspace = ThreadWorkspace.of(store.home, thread_id)
    return [screened_request(store, thread, approval, workspace) for approval in store.approvals(thread_id, "pending")]


def _call_request(store: Any, thread_id: str, call_id: str) -> Any:
    """The call as the store holds it, for `approve` (which shows nothing): the approval keeps
    binding the state of the workspace that the last screen (`pending`, the paused run) showed.
    From the store alone: no runner, no sandbox."""
    from devagent.decisions import call_request

    approval = store.approval(thread_id, call_id)
    if approval is None:
        from devagent.errors import ThreadNotFound

        raise ThreadNotFound(f"thread {thread_id} has no call {call_id!r} (see `devagent pending {thread_id}`)")
    return call_request(store, store.thread(thread_id), approval)


def _confirm_command(thread_id: str, call_id: str, required: tuple[str, ...]) -> str:
    """`devagent approve ID CALL_ID --confirm NAME ...`: what approves one call that destroys data."""
    words = " ".join(f"--confirm {_shell_word(w)}" for w in required)
    return f"devagent approve {thread_id} {_shell_word(call_id)} {words}"


def _shell_word(text: str) -> str:
    """A name from the model's SQL, quoted for a copy-pasteable command (escaped when shown)."""
    import shlex

    return shlex.quote(text)


def _check_confirmation(req: Any, typed: tuple[str, ...]) -> None:
    """--confirm must name exactly what the call destroys; otherwise nothing is approved."""
    from devagent.decisions import required_confirmation, same_words

    required = required_confirmation(req)
    if not required:
        raise DevagentError(f"call {req.call_id} destroys no data: approve it without --confirm")
    if not same_words(typed, required):
        expected = " ".join(f"--confirm {_shell_word(w)}" for w in required)
        raise DevagentError(f"--confirm {' '.join(typed)} does not match what call "
                            f"{req.call_id} destroys; nothing was approved. Expected: {expected}")


@app.command()
def reject(
    thread_id: str = typer.Argument(..., metavar="ID", help="The thread's id or a unique prefix."),
    call_id: str = typer.Argument(..., metavar="CALL_ID", help="The call to reject, as `devagent pending` lists it."),
    reason: str = typer.Option("rejected by the user", "--reason", help="Told to the model."),
) -> None:
    """Reject a call; the model is told the reason."""
    store = _store()
    thread_id = _thread_id(store, thread_id, required=True)
    store.requeue_interrupted(thread_id)
    store.decide(thread_id, call_id, "rejected", actor="user", reason=reason)
    _say(f"rejected {call_id}; now run: devagent resume {thread_id}")


# ---------------------------------------------------------------------------- review


@app.command()
def threads(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    all_: bool = typer.Option(False, "--all", help="Threads of every repository (default: the one you are in)."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="Threads of this repository."),
    wide: bool = typer.Option(False, "--wide", help="Also the branch, the repository and token usage."),
) -> None:
    """List threads: id, state, pending approvals, task, last activity."""
    import time

    from devagent.store import ThreadLock

    find_here = None if all_ or repo else _current_repo_soon()
    store = _store()
    tasks, records = store.last_tasks(), store.usage_records()
    here = None if all_ else (repo.resolve() if repo else find_here())  # type: ignore[misc]
    rows = []
    for t in store.threads():
        if here is not None and Path(t.repo) != here:
            continue
        used = _priced_usage(t, records.get(t.id, []))
        state = t.state
        alive = ThreadLock(store.home, t.id).held()
        if state == "running" and not alive:
            state = "interrupted"  # its process died mid-turn: `devagent resume` continues it
        error = t.settings.get("last_error") if state == "failed" else None
        # A call that was running when its process died is asked again at resume: it is pending.
        if not alive:
            store.requeue_interrupted(t.id)
        waiting = store.approvals(t.id, "pending")
        rows.append({
            "id": t.id, "repo": t.repo, "branch": t.branch, "state": state, "error": error,
            "pending": len(waiting), "task": tasks.get(t.id, ""), "usage": used,
            "last_activity": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.updated_at)),
        })
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        where = f" of {here}" if here is not None else ""
        _say(f"no threads{where} yet: start one with devagent task \"...\"" +
             (" (devagent threads --all lists every repository's)" if here is not None else ""))
        return
    _print_thread_rows(rows, wide)


def _print_thread_rows(rows: list[dict[str, Any]], wide: bool) -> None:
    """One line per thread. The id, state, pending count and last activity are never cut; the task
    gets what is left of the terminal's width and is shortened with "…" (the branch is the id's,
    so it is shown only with --wide)."""
    from devagent.term import shown
    from devagent.usage import format_cost

    screen = _screen()
    names = ["id", "state", "pending", "last activity", "task"] + (["tokens in (cached) / out (reasoning)", "cost", "branch", "repo"] if wide else [])
    table = [names]
    for r in rows:
        cells = [r["id"], r["state"], str(r["pending"]), r["last_activity"][5:16], (r["task"].splitlines() or [""])[0]]
        if wide:
            u = r["usage"]
            cells += [_token_cell(u) or "-", format_cost(u["cost_usd"]) if "cost_usd" in u else "-",
                      r["branch"], r["repo"]]
        table.append(cells)
    width = lambda text: shown(text, inline=True).cell_len  # noqa: E731  (escaped, as shown)

    def fit(text: str, room: int | None) -> str:
        """`text` cut (ending in …) so that, escaped, it takes at most `room` cells."""
        if room is None or width(text) <= room:
            return text
        cut = text[:max(room - 1, 0)]
        while cut and width(cut + "…") > room:
            cut = cut[:-1]
        return cut + "…"

    fixed = [max(width(row[i]) for row in table) for i in range(4)]
    room = max(screen.width - sum(fixed) - 2 * 4, 8) if screen.is_terminal else None
    if wide and room is not None:  # the wide columns follow the task: it keeps a fair share, they may wrap
        room = max(24, room // 3)
    for i, row in enumerate(table):
        line = shown("", style="bold" if i == 0 else "", inline=True)
        for n, cell in enumerate(row[:4]):
            gap = " " * (fixed[n] - width(cell))
            line.append_text(shown(gap + cell if n == 2 else cell + gap, inline=True))
            line.append_text(shown("  ", inline=True))
        # Never wrapped onto a second row: what does not fit is cut at the end, the task's.
        line.append_text(shown(fit(row[4], room), inline=True))
        for cell in row[5:]:
            line.append_text(shown("  " + cell, inline=True))
        screen.print(line)
        error = rows[i - 1]["error"] if i else None
        if error and error.strip():
            # Why it stopped, on a line of its own under the row: the columns above stay whole.
            indent = fixed[0] + 2
            room_why = screen.width - indent if screen.is_terminal else None
            screen.print(shown(" " * indent, (fit(error.strip().splitlines()[0], room_why), "red"), inline=True))


_prices_of: dict[str, Any] = {}  # repository -> its price table (read once per command)


def _priced_usage(thread: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A thread's tokens added up, with `cost_usd` when its repository's config prices them."""
    from devagent.config import ConfigError, load_prices
    from devagent.usage import priced_total

    if not records:
        return {}
    if thread.repo not in _prices_of:
        try:
            _prices_of[thread.repo] = load_prices(Path(thread.repo))
        except ConfigError:
            _prices_of[thread.repo] = {}  # `devagent config` names the broken file
    return priced_total(records, _prices_of[thread.repo], thread.settings.get("model"))


def _token_cell(u: dict[str, Any]) -> str:
    """`2,400 (2,000) / 68 (14)`: input (cached) / output (reasoning), what was reported."""
    if not u:
        return ""
    cell = f"{u.get('input_tokens', 0):,}"
    cell += f" ({u['cached_tokens']:,})" if u.get("cached_tokens") else ""
    cell += f" / {u.get('output_tokens', 0):,}"
    return cell + (f" ({u['reasoning_tokens']:,})" if u.get("reasoning_tokens") else "")


@app.command()
def log(thread_id: Optional[str] = typer.Argument(None, metavar="[ID]", help=OPTIONAL_ID),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output, command output included."),
        output: bool = typer.Option(False, "--output", help="Also what each command printed (as the model got it)."),
        no_pager: bool = typer.Option(False, "--no-pager", help="Do not page the output on a terminal.")) -> None:
    """Audit trail: every proposed, approved, rejected and executed call, file edit, model message
    and token count; one event per line."""
    from devagent.auditlog import log_lines

    store = _store()
    thread_id = _thread_id(store, thread_id)
    entries = store.audit_log(thread_id)
    if as_json:
        _emit_json(entries)
        return
    from devagent.pager import finish_paging, pager_screen
    from devagent.term import Screen, shown

    # On a terminal (or its pager) long lines wrap; on a pipe each event stays one whole line.
    screen = pager_screen(no_pager) if sys.stdout.isatty() else Screen()
    lines = []  # printed at once: one print per event costs more than rendering them
    for entry in log_lines(entries):
        parts: list[Any] = [(entry.at + "  ", "dim"), (f"{entry.event:<14}", "bold")]
        if entry.call_id:
            parts.append((f" {entry.call_id}", "", 80))
        for part in entry.parts:
            parts.append("  ")
            for n, piece in enumerate(part.split("\n")):
                if n:
                    parts.append(("⏎", "dim"))
                parts.append((piece, "", 4096))
        if entry.extra:
            parts.append(("  (" + " · ".join(entry.extra) + ")", "dim", 512))
        lines.append(shown(*parts))  # one line built at once: ~600 of them
        if output and entry.output:
            for text in entry.output.rstrip("\n").split("\n"):
                lines.append(shown(("    │ ", "dim"), text, inline=True, limit=4096))
    if lines:
        screen.print(*lines)
    finish_paging(screen)


@app.command()
def diff(thread_id: Optional[str] = typer.Argument(None, metavar="[ID]", help=OPTIONAL_ID), stat: bool = typer.Option(False, "--stat", help="Only the files changed and how much."),
         no_pager: bool = typer.Option(False, "--no-pager", help="Do not page the output on a terminal.")) -> None:
    """Show what the thread's branch changes against where it started."""
    from devagent.workspace import ThreadWorkspace

    store = _store()
    thread_id = _thread_id(store, thread_id)
    text = ThreadWorkspace.of(store.home, thread_id).diff(stat=stat)
    if sys.stdout.isatty():
        from devagent.pager import finish_paging, pager_screen
        from devagent.ui import diff_text

        screen = pager_screen(no_pager)
        screen.print(diff_text(text, limit=len(text) * 40 + 1))
        finish_paging(screen)
    else:
        from devagent.term import emit_raw

        emit_raw(text)  # a patch for a file or a pipe, byte for byte


@app.command()
def apply(thread_id: Optional[str] = typer.Argument(None, metavar="[ID]", help=OPTIONAL_ID)) -> None:
    """Merge the thread's branch into your current branch (refuses a dirty checkout; on a conflict
    the thread becomes the local branch devagent/ID for you to merge by hand)."""
    from devagent.runner import ThreadRunner
    from devagent.workspace import AlreadyMerged

    store = _store()
    thread_id = _thread_id(store, thread_id)
    try:
        head = ThreadRunner(store).apply(thread_id)
    except AlreadyMerged as exc:
        _say(f"already merged: {exc}")
        return
    _say(f"merged devagent/{thread_id} into {store.thread(thread_id).repo} ({head[:10]})")


@app.command()
def checkout(thread_id: Optional[str] = typer.Argument(None, metavar="[ID]", help=OPTIONAL_ID)) -> None:
    """Bring the thread's branch into your repository as the local branch devagent/ID (no merge)."""
    from devagent.runner import ThreadRunner

    store = _store()
    thread_id = _thread_id(store, thread_id)
    commit = ThreadRunner(store).checkout(thread_id)
    _say(f"branch devagent/{thread_id} is in {store.thread(thread_id).repo} at {commit[:10]}; "
         f"review or merge it with git (git merge devagent/{thread_id})")


@app.command()
def undo(thread_id: Optional[str] = typer.Argument(None, metavar="[ID]", help=OPTIONAL_ID)) -> None:
    """Undo the thread's last turn: its branch and files go back to before it; the model is told."""
    import asyncio

    from devagent.runner import ThreadRunner

    store = _store()
    thread_id = _thread_id(store, thread_id)
    undone = asyncio.run(ThreadRunner(store).undo(thread_id))
    _say(f"undid the last turn of thread {thread_id}: {undone}")


@app.command()
def discard(thread_id: str = typer.Argument(..., metavar="ID", help="The thread's id or a unique prefix."),
            yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete a thread: its container, checkout, branch and records."""
    from devagent.errors import UsageError
    from devagent.runner import ThreadRunner

    store = _store()
    thread_id = _thread_id(store, thread_id, required=True)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"discard deletes thread {thread_id} and its work; without a terminal to ask, "
                             "pass --yes to confirm")
        from devagent.term import shown

        answer = _screen().ask(shown(f"delete thread {thread_id}, its container, checkout and branch? [y/N] "))
        if answer.strip().lower() not in ("y", "yes"):
            raise typer.Exit(EXIT_USAGE)
    ThreadRunner(store).discard(thread_id)
    _say(f"discarded thread {thread_id}")


@app.command()
def shell(thread_id: Optional[str] = typer.Argument(None, metavar="[ID]", help=OPTIONAL_ID)) -> None:
    """Open a shell in the thread's container (no agent, no approvals: you are the user).

    Commands can also come on stdin: echo 'make test' | devagent shell ID"""
    import os
    import subprocess

    from devagent.migrations import Database
    from devagent.runner import ThreadRunner

    store = _store()
    thread_id = _thread_id(store, thread_id)
    database = Database.parse(store.thread(thread_id).settings.get("database"))
    with ThreadRunner(store).user_container(thread_id) as container:
        container.ensure_user_entry()  # containers made before it was written at creation
        env = {**container.spec.environment(), "TERM": os.environ.get("TERM") or "xterm", **database.libpq_env()}
        _say(f"devagent shell: thread {thread_id}, container {container.spec.name}. Commands you type here "
             "are not approved or logged; files you change are committed with the next turn.", stderr=True, style="dim")
        tty = ["-it"] if sys.stdin.isatty() and sys.stdout.isatty() else ["-i"]
        # Values go through the environment of `docker exec` itself (-e NAME): never on a command line.
        argv = ["docker", "exec", *tty, "-u", f"{container.uid}:{container.gid}", "-w", "/workspace",
                *[arg for name in env for arg in ("-e", name)], container.spec.name, "/bin/bash"]
        code = subprocess.call(argv, env={**os.environ, **env})
    raise typer.Exit(code)


@app.command()
def migrations(thread_id: Optional[str] = typer.Argument(None, metavar="[ID]", help=OPTIONAL_ID),
               as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Migrations applied in the thread: sha256, statements, result."""
    import time

    store = _store()
    thread_id = _thread_id(store, thread_id)
    rows = store.migrations(thread_id)
    for r in rows:
        r["source"] = _migration_source(store, thread_id, r.get("call_id"))
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        _say("no migrations in this thread")
        return
    from devagent.term import shown

    screen = _screen()
    for r in rows:
        applied = r["result"] == "applied"
        outcome = "" if applied else ("rolled back, nothing applied" if r["result"] == "failed" else "not run")
        line = shown(time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(r["at"])) + "  ",
                     (f"{r['result']:<8}", "bold green" if applied else "bold red"), "  ",
                     (r["source"], "bold"),
                     (f"  {count(r['statements'] or 0, 'statement')} · {r['duration_s'] or 0:.2f}s · sha256 {r['sha256'][:12]}", "dim"),
                     inline=True, limit=4096)
        screen.print(line)
        detail = f"{outcome}: {r['detail']}" if outcome and r["detail"] else (outcome or "")
        if detail:
            screen.print(shown("    ", (detail, "red"), limit=1024))


def _migration_source(store: Any, thread_id: str, call_id: str | None) -> str:
    """What a migration was: its file, or its first statement (as the model proposed it)."""
    approval = store.approval(thread_id, call_id) if call_id else None
    try:
        args = json.loads(approval.arguments) if approval else {}
    except ValueError:
        args = {}
    if isinstance(args.get("path"), str):
        return args["path"]
    first = next((line.strip() for line in str(args.get("sql") or "").splitlines() if line.strip()), "")
    return (first[:60] + "…") if len(first) > 60 else first or "(unknown)"


@app.command("config")
def config_cmd(
    repo: Path = typer.Option(Path("."), "--repo", help="Whose project config to include (default: here)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The effective settings for new threads, and where each came from."""
    from devagent.config import KEYS, ConfigError, config_files, load_config

    import subprocess

    # The top of the work tree, by plain git (a repository with no commits yet still has its
    # project file); where git says no (inside .git, say) GitPython may still find one; outside
    # a repository: the user's file and the environment only.
    top = subprocess.run(["git", "-c", "core.fsmonitor=false", "-C", str(repo), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    root: Path | None = Path(top.stdout.strip()).resolve() if top.returncode == 0 and top.stdout.strip() else None
    if root is None:
        from devagent.workspace import find_repo

        try:
            root = find_repo(repo)
        except DevagentError:
            root = None
    try:
        config = load_config(root)
    except ConfigError as exc:
        from devagent.errors import UsageError

        raise UsageError(str(exc)) from None
    rows = [{"key": key, "value": config[key], "source": config.source(key)} for key in KEYS]
    if as_json:
        _emit_json({"files": [str(f) for f in config_files(root)], "settings": rows})
        return
    from rich.table import Table

    from devagent.term import shown

    table = Table(box=None, pad_edge=False)
    for header in ("setting", "value", "from"):  # Table(*headers) takes a non-str header for a Column
        table.add_column(shown(header))
    for row in rows:
        value = "" if row["value"] is None else json.dumps(row["value"]) if isinstance(row["value"], (list, bool)) else str(row["value"])
        table.add_row(shown(row["key"]), shown(value), shown(row["source"], style="dim"))
    _screen().print(table)
    _say("files: " + ", ".join(str(f) for f in config_files(root)), style="dim")


# ---------------------------------------------------------------------------- command rules

rules_app = typer.Typer(
    help="Command rules (allow / prompt / forbid) from your file and the project's .devagent/policy.toml.",
    invoke_without_command=True,
)
app.add_typer(rules_app, name="rules")


def _rules_project(repo: Optional[Path]) -> Optional[Path]:
    """The checkout whose .devagent/policy.toml applies: --repo, else the one holding the cwd."""
    from devagent.policy import find_project_root

    root = find_project_root(repo or Path.cwd())
    if repo is not None and root is None:
        raise DevagentError(f"{repo} is not inside a git repository")
    return root


def _rules_policy(repo: Optional[Path], thread: Optional[str]) -> tuple[Any, Optional[Path], Optional[Path]]:
    """The rules that apply (user, project and, with --thread, that thread's own file); the
    project root; the thread's rule file."""
    from devagent.policy import load_policy

    if thread is None:
        root = _rules_project(repo)
        return load_policy(root), root, None
    from devagent.workspace import ThreadWorkspace

    store = _store()
    found = store.find_thread(thread)
    root = _rules_project(Path(found.repo))
    thread_file = ThreadWorkspace.of(store.home, found.id).rules_file
    return load_policy(root, thread_file=thread_file), root, thread_file


THREAD_RULES_HELP = "Also the rules saved for this thread (by [a] on its approval screen)."


def _print_plain(text: str, style: str | None = None) -> None:
    _say(text, style=style or "")


@rules_app.callback()
def rules_list(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="The project whose rules apply (default: the one you are in)."),
    thread: Optional[str] = typer.Option(None, "--thread", metavar="ID", help=THREAD_RULES_HELP),
) -> None:
    """The active rules with their file:line, and the presets in use."""
    if ctx.invoked_subcommand is not None:
        return
    from devagent.policy import user_policy_path

    policy, root, thread_file = _rules_policy(repo, thread)
    if as_json:
        _emit_json({"files": [f.to_json() for f in policy.files], "presets": policy.presets,
                    "user_file": str(user_policy_path()), "project": str(root) if root else None,
                    "rules": [r.to_json() for r in policy.rules]})
        return
    loaded = {f.path for f in policy.files}
    _print_plain("rule files (forbid > prompt > allow; with no rule, every command asks):", "bold")
    files = [("user", user_policy_path()), ("project", root / ".devagent" / "policy.toml" if root else None)]
    for scope, path in files + ([("thread", thread_file)] if thread_file else []):
        if path is None:
            _print_plain(f"  {scope:<8} (not in a git repository)")
        elif str(path) in loaded:
            digest = next(f.sha256 for f in policy.files if f.path == str(path))
            _print_plain(f"  {scope:<8} {path}  sha256 {digest[:12]}")
        else:
            _print_plain(f"  {scope:<8} {path}  (none)")
    if policy.presets:
        _print_plain("presets: " + ", ".join(policy.presets))
    if not policy.rules:
        _print_plain("no rules: every command asks for approval. Add one with: devagent rules add allow \"pytest\"")
        return
    for rule in policy.rules:
        _print_plain(f"{rule.id}  {rule.decision:<6}  {rule.pattern_text()}   {rule.where}", "bold")
        if rule.reason:
            _print_plain(f"        {rule.reason}")
        for example in rule.examples:
            _print_plain(f"        e.g.  {example}", "dim")
        for example in rule.not_examples:
            _print_plain(f"        not   {example}", "dim")


@rules_app.command("check")
def rules_check(
    command: str = typer.Argument(..., metavar="COMMAND", help="A shell command, as the agent would propose it."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="The project whose rules apply (default: the one you are in)."),
    thread: Optional[str] = typer.Option(None, "--thread", metavar="ID", help=THREAD_RULES_HELP),
) -> None:
    """The decision the rules give COMMAND, and why: each simple command, the rule that matched it,
    and whatever forced a prompt."""
    from devagent.policy import offer_rules

    policy = _rules_policy(repo, thread)[0]
    verdict = policy.decide(command)
    offered, not_offered = offer_rules(command, policy) if verdict.decision != "allow" else ([], None)
    if as_json:
        _emit_json({"command": command, **verdict.to_json(), "offer": [r.describe() for r in offered],
                    "offer_note": not_offered})
        return
    style = {"allow": "bold green", "prompt": "bold yellow", "forbid": "bold red"}[verdict.decision]
    _print_plain(f"{verdict.decision}: {verdict.why()}", style)
    for number, check in enumerate(verdict.checks, 1):
        _print_plain(f"  {number}. {check.command.text}")
        for depth, part in enumerate(check.chain()):  # a wrapper, then what it runs (`timeout 5 pytest`)
            pad = "     " + "  " * depth
            if depth:
                _print_plain(f"{pad[:-2]}runs {part.command.text}")
            tokens = part.command.tokens
            argv = " ".join(json.dumps(t, ensure_ascii=False) for t in tokens) if tokens else "(not plain)"
            _print_plain(f"{pad}argv {argv}", "dim")
            _print_plain(f"{pad}{part.explain(wrapped=False)}")
    for finding in verdict.findings:
        rule = finding.rule
        _print_plain(f"  {rule.decision} rule {rule.where} ({rule.pattern_text()}) matches `{finding.command}`"
                     + (f": {rule.reason}" if rule.reason else ""))
    for problem in verdict.problems:
        _print_plain(f"  asks because it contains {problem}")
    if offered:
        _print_plain("  [a] on the approval screen would offer: " + " and ".join(r.describe() for r in offered), "dim")
    elif not_offered:
        _print_plain(f"  [a] on the approval screen offers no rule: {not_offered}", "dim")


@rules_app.command("add")
def rules_add(
    decision: str = typer.Argument(..., metavar="allow|prompt|forbid", help="What the rule decides for matching commands."),
    command: str = typer.Argument(..., metavar="COMMAND", help="The argv prefix, e.g. \"pytest\" or \"git log\"."),
    project: bool = typer.Option(True, "--project/--user", help="The project's .devagent/policy.toml (default) or yours."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Shown to you; for forbid, also to the model."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="The project (default: the one you are in)."),
) -> None:
    """Add a rule for every command starting with COMMAND's words."""
    from devagent.policy import rule_from_command, save_rule

    rule = rule_from_command(decision, command, reason)
    root = _rules_project(repo) if project else None
    if project and root is None:
        raise DevagentError("not inside a git repository: pass --repo PATH, or --user for your own rules")
    path = save_rule("project" if project else "user", rule, root)
    _print_plain(f"added to {path}: {rule.describe()}")


@rules_app.command("rm")
def rules_rm(
    rule_id: str = typer.Argument(..., metavar="ID", help="The rule's ID, as `devagent rules` lists it."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="The project (default: the one you are in)."),
    thread: Optional[str] = typer.Option(None, "--thread", metavar="ID",
                                         help="A rule saved for this thread (`devagent rules --thread ID` lists them)."),
) -> None:
    """Remove a rule by the ID `devagent rules` shows."""
    from devagent.policy import remove_rule

    policy = _rules_policy(repo, thread)[0]
    matches = [r for r in policy.rules if r.id == rule_id and r.scope != "preset"] or \
        [r for r in policy.rules if r.id == rule_id]
    if not matches:
        raise DevagentError(f"no rule {rule_id!r} (see `devagent rules`)")
    path = remove_rule(matches[0])
    _print_plain(f"removed {rule_id} from {path}: {matches[0].decision} {matches[0].pattern_text()}")


# ---------------------------------------------------------------------------- sandbox


@sandbox_app.command("build")
def sandbox_build(force: bool = typer.Option(False, "--force", help="Rebuild even if images are current.")) -> None:
    """Build the sandbox image (from Debian packages; no container registry needed)."""
    from devagent.sandbox import build_images, connect

    from devagent.term import shown

    screen = _screen(stderr=True)
    with screen.console.status(shown("building the sandbox image")) as status:
        def progress(line: str) -> None:
            status.update(shown(line, limit=120))
            if line.startswith(("step", "built", "building", "base image", "sandbox image")):
                screen.print(shown(line))

        build_images(connect(), progress, force=force)


@sandbox_app.command("doctor")
def sandbox_doctor() -> None:
    """Diagnose Docker: daemon, socket permission, sandbox image."""
    from devagent.doctor import diagnose

    problems = 0
    for ok, line in diagnose():
        _say(("ok    " if ok else "FAIL  ") + line)
        problems += not ok
    if problems:
        raise typer.Exit(EXIT_ERROR)


# ---------------------------------------------------------------------------- entry point


def main() -> None:
    # Recent typer ships its own copy of click: take UsageError from wherever typer raises it.
    try:
        from typer._click.exceptions import UsageError
    except ImportError:
        from click.exceptions import UsageError

    try:
        code = app(prog_name="devagent", standalone_mode=False)
    except UsageError as exc:
        exc.show()
        code = EXIT_USAGE
        _stream_error(exc.format_message(), code)
    except (typer.Abort, KeyboardInterrupt):
        _say("", stderr=True)
        _say("interrupted", stderr=True)
        code = EXIT_INTERRUPTED
        _stream_error("interrupted", code)
    except DevagentError as exc:
        _stream_error(str(exc), exc.exit_code)
        if _debug:
            raise
        # The message can quote the model (a path, a call id): escaped like everything else.
        _say("error: ", str(exc), stderr=True)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except Exception as exc:  # an unexpected bug: one line, traceback only with --debug
        _stream_error(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
        if _debug:
            raise
        _say(f"error: {type(exc).__name__}: ", str(exc), " (run with --debug for the traceback)", stderr=True)
        code = EXIT_ERROR
    _exit(code or 0)


def _exit(code: int) -> None:
    """End the process. Once a turn has loaded the agent SDK, tearing its thousands of classes
    down takes the interpreter most of a second, for nothing: the exit handlers run (they flush
    and clean up, as at any exit), the output is flushed, and the process ends without it."""
    if "agents" not in sys.modules:
        sys.exit(code)
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what could be written was
            pass
    os._exit(code)


def _stream_error(message: str, code: int) -> None:
    """With --json, a failed run ends with an `error` line on stdout (the message is on stderr too)."""
    if _stream is not None:
        _stream.error(message, code)
