"""The `devagent` command line: parsing, rendering, prompting. No business logic lives here.

Heavy modules (the agent SDK, docker, GitPython, rich) are imported inside the commands that
need them, so `devagent --help` and `devagent threads` start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from devagent.errors import DevagentError

EXIT_DONE, EXIT_ERROR, EXIT_USAGE, EXIT_PAUSED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    help="A sandboxed DevOps agent: every shell command and migration waits for your approval "
    "of exactly what will run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sandbox_app = typer.Typer(help="Build the sandbox image and diagnose Docker.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")

_debug = False


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
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


def _interactive(no_input: bool) -> bool:
    return not no_input and sys.stdin.isatty()


def _emit_json(data: Any) -> None:
    from devagent.term import emit_json

    emit_json(data)


def _runner(interactive: bool, as_json: bool) -> Any:
    from devagent.runner import NoApprover, ThreadRunner
    from devagent.ui import ConsoleEvents, TerminalApprover

    progress = _screen(stderr=as_json)
    approver = TerminalApprover(progress) if interactive else NoApprover()
    runner = ThreadRunner(_store(), events=ConsoleEvents(progress), approver=approver)
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
        runner.abort()
        # Let the turn unwind (its finally blocks stop the container) before exiting 130.
        tasks = asyncio.all_tasks(loop)
        for pending_task in tasks:
            pending_task.cancel()
        try:
            loop.run_until_complete(asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30))
        except BaseException:
            pass
        _say("\ninterrupted; nothing is lost: continue with ", f"`devagent resume {thread_id}`", stderr=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        loop.close()


def _report(outcome: Any, as_json: bool) -> None:
    """Print how the turn ended; exit 3 when it is paused for approval."""
    from devagent.term import shown

    if as_json:
        _emit_json({
            "thread": outcome.thread_id,
            "status": outcome.status,
            "final_output": outcome.final_output,
            "commit": outcome.commit,
            "pending": [p.to_json() for p in outcome.pending],
        })
    else:
        screen = _screen()
        if outcome.status == "paused":
            from devagent.ui import pending_screens

            screen.print(*pending_screens(outcome.pending, expand=screen.wraps))
            screen.print(shown(
                f"thread {outcome.thread_id} is paused: {len(outcome.pending)} call(s) wait for approval.\n"
                f"  devagent approve {outcome.thread_id} --all\n"
                f"  devagent reject {outcome.thread_id} CALL_ID --reason \"...\"\n"
                f"  devagent resume {outcome.thread_id}"
            ))
        else:
            from devagent.runner import STOPPED_BY_USER

            ended = "stopped" if outcome.final_output == STOPPED_BY_USER else "done"
            summary = f"thread {outcome.thread_id} {ended}: {outcome.commands_run} command(s) run"
            summary += f", committed {outcome.commit[:10]} on devagent/{outcome.thread_id}" if outcome.commit else ", no file changes"
            screen.print(shown(summary, style="bold green"))
            if outcome.diffstat:
                screen.print(shown(outcome.diffstat, style="dim"))
            screen.print(shown(f"review: devagent diff {outcome.thread_id}   merge: devagent apply {outcome.thread_id}",
                               style="dim"))
    if outcome.status == "paused":
        raise typer.Exit(EXIT_PAUSED)


# ---------------------------------------------------------------------------- agent commands


@app.command()
def task(
    text: str = typer.Argument(..., help="What you want done."),
    thread: Optional[str] = typer.Option(None, "--thread", help="Continue this thread instead of starting one."),
    repo: Path = typer.Option(Path("."), "--repo", help="The git repository to work on (new threads)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (default: $DEVAGENT_MODEL or gpt-4.1)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (Chat Completions)."),
    network: bool = typer.Option(False, "--network/--no-network", help="Give the sandbox network access."),
    database: str = typer.Option("sqlite", "--database", help="sqlite (default), postgres, or a database URL."),
    max_turns: Optional[int] = typer.Option(None, "--max-turns", min=1, help="Model round-trips allowed per turn (default 50)."),
    no_input: bool = typer.Option(False, "--no-input", help="Never prompt: pause at the first approval (exit 3)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result on stdout."),
) -> None:
    """Start a thread (prints its id) or continue one with --thread; runs the agent."""
    from devagent.runner import TaskOptions

    runner = _runner(_interactive(no_input), as_json)
    if thread is None:
        options = TaskOptions(model=model, base_url=base_url, network=network, database=database,
                              max_turns=max_turns or 50)
        created = runner.create_thread(repo, options)
        thread = created.id
        _say(f"thread {thread} on branch devagent/{thread}", stderr=True, style="bold")
    else:
        # The sandbox (network, database) is the thread's for good; the model settings may change.
        runner.update_thread(thread, model=model, base_url=base_url, max_turns=max_turns)
    outcome = _run_turn(runner, thread, lambda: runner.run_task(thread, text))
    _report(outcome, as_json)


@app.command()
def resume(
    thread_id: str = typer.Argument(..., metavar="ID"),
    no_input: bool = typer.Option(False, "--no-input", help="Never prompt: stop again at an undecided approval."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result on stdout."),
) -> None:
    """Resume a paused thread with the decisions recorded so far."""
    runner = _runner(_interactive(no_input), as_json)
    outcome = _run_turn(runner, thread_id, lambda: runner.resume(thread_id))
    _report(outcome, as_json)


@app.command()
def pending(
    thread_id: Optional[str] = typer.Argument(None, metavar="[ID]"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List pending approvals: call id, tool, the exact command or SQL."""
    from devagent.runner import ThreadRunner

    store = _store()
    runner = ThreadRunner(store)
    thread_ids = [thread_id] if thread_id else [t.id for t in store.threads()]
    requests = [req for tid in thread_ids for req in runner.pending_requests(tid)]
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
    thread_id: str = typer.Argument(..., metavar="ID"),
    call_ids: list[str] = typer.Argument(None, metavar="[CALL_ID ...]"),
    all_: bool = typer.Option(False, "--all", help="Approve every pending call of the thread."),
    always: bool = typer.Option(False, "--always", help="Also approve these exact calls in future turns of this thread."),
) -> None:
    """Approve some or all pending calls of a paused thread (then `devagent resume`)."""
    store = _store()
    store.thread(thread_id)
    pending_ids = [a.call_id for a in store.approvals(thread_id, "pending")]
    targets = pending_ids if all_ else list(call_ids or [])
    if not targets:
        raise DevagentError("name the calls to approve, or pass --all" if pending_ids else f"thread {thread_id} has no pending approvals")
    for call_id in targets:
        store.decide(thread_id, call_id, "approved", actor="user", always=always)
        _say(f"approved {call_id}")
    _say(f"now run: devagent resume {thread_id}")


@app.command()
def reject(
    thread_id: str = typer.Argument(..., metavar="ID"),
    call_id: str = typer.Argument(..., metavar="CALL_ID"),
    reason: str = typer.Option("rejected by the user", "--reason", help="Told to the model."),
) -> None:
    """Reject a call; the model is told the reason."""
    store = _store()
    store.thread(thread_id)
    store.decide(thread_id, call_id, "rejected", actor="user", reason=reason)
    _say(f"rejected {call_id}; now run: devagent resume {thread_id}")


# ---------------------------------------------------------------------------- review


@app.command()
def threads(as_json: bool = typer.Option(False, "--json")) -> None:
    """List threads: id, repo, branch, state, pending approvals, last activity."""
    import time

    from devagent.store import ThreadLock

    store = _store()
    rows = []
    for t in store.threads():
        state = t.state
        if state == "running" and not ThreadLock(store.home, t.id).held():
            state = "interrupted"  # its process died mid-turn: `devagent resume` continues it
        rows.append({
            "id": t.id, "repo": t.repo, "branch": t.branch, "state": state,
            "pending": len(store.approvals(t.id, "pending")),
            "last_activity": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.updated_at)),
        })
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        _say("no threads yet: start one with devagent task \"...\"")
        return
    from rich.table import Table

    from devagent.term import shown

    table = Table()
    for header in ("id", "state", "pending", "branch", "repo", "last activity"):
        table.add_column(shown(header), no_wrap=header != "repo", overflow="fold")
    for r in rows:
        table.add_row(*(shown(str(r[k]), inline=True) for k in ("id", "state", "pending", "branch", "repo", "last_activity")))
    _screen().print(table)


@app.command()
def log(thread_id: str = typer.Argument(..., metavar="ID"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Audit trail: every proposed, approved, rejected and executed call."""
    import time

    store = _store()
    store.thread(thread_id)
    entries = store.audit_log(thread_id)
    if as_json:
        _emit_json(entries)
        return
    from devagent.term import shown

    screen = _screen()
    for e in entries:
        detail = e["detail"]
        text = detail.get("command") or detail.get("arguments") or detail.get("reason") or detail.get("task") or ""
        if not text and detail:
            # The output the model read is in `log --json`; one line per event here.
            text = json.dumps({k: v for k, v in detail.items() if k != "output"}, ensure_ascii=False)
        line = shown(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])) + "  ",
                     (f"{e['event']:<14}", "bold"), inline=True)
        for label, value in (("call", e["call_id"]), ("tool", e["tool"]), ("by", e["actor"]),
                             ("exit", e["exit_code"]), ("took", e["duration_s"] and f"{e['duration_s']:.2f}s")):
            if value is not None and value != "":
                line.append_text(shown((f"{label}={value}  ", "dim"), inline=True))
        line.append_text(shown(str(text), inline=True, limit=4096))
        screen.print(line)


@app.command()
def diff(thread_id: str = typer.Argument(..., metavar="ID"), stat: bool = typer.Option(False, "--stat")) -> None:
    """Show what the thread's branch changes against where it started."""
    from devagent.runner import ThreadRunner

    store = _store()
    store.thread(thread_id)
    text = ThreadRunner(store).workspace(thread_id).diff(stat=stat)
    if sys.stdout.isatty():
        from devagent.ui import diff_text

        _screen().print(diff_text(text, limit=len(text) * 40 + 1))
    else:
        from devagent.term import emit_raw

        emit_raw(text)  # a patch for a file or a pipe, byte for byte


@app.command()
def apply(thread_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Merge the thread's branch into your current branch (refuses a dirty checkout)."""
    from devagent.runner import ThreadRunner

    store = _store()
    head = ThreadRunner(store).apply(thread_id)
    _say(f"merged devagent/{thread_id} into {store.thread(thread_id).repo} ({head[:10]})")


@app.command()
def discard(thread_id: str = typer.Argument(..., metavar="ID"),
            yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete a thread: its container, checkout, branch and records."""
    from devagent.runner import ThreadRunner

    store = _store()
    store.thread(thread_id)
    if not yes and sys.stdin.isatty():
        from devagent.term import shown

        answer = _screen().ask(shown(f"delete thread {thread_id}, its container, checkout and branch? [y/N] "))
        if answer.strip().lower() not in ("y", "yes"):
            raise typer.Exit(EXIT_USAGE)
    ThreadRunner(store).discard(thread_id)
    _say(f"discarded thread {thread_id}")


@app.command()
def shell(thread_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Open a shell in the thread's container (no agent, no approvals: you are the user)."""
    import os
    import subprocess

    from devagent.runner import ThreadRunner

    with ThreadRunner(_store()).user_container(thread_id) as container:
        code = subprocess.call(["docker", "exec", "-it", "-u", f"{container.uid}:{container.gid}",
                                "-w", "/workspace", container.spec.name, "bash"], env=os.environ)
    raise typer.Exit(code)


@app.command()
def migrations(thread_id: str = typer.Argument(..., metavar="ID"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Migrations applied in the thread: sha256, statements, result."""
    import time

    store = _store()
    store.thread(thread_id)
    rows = store.migrations(thread_id)
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        _say("no migrations in this thread")
        return
    from devagent.term import shown

    screen = _screen()
    for r in rows:
        line = shown(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["at"])) + "  ",
                     (f"{r['result']:<8}", "bold green" if r["result"] == "applied" else "bold red"),
                     (f"  sha256={r['sha256']}  statements={r['statements']}  took={r['duration_s'] or 0:.2f}s  ",
                      "dim"), f"{r['database']}  {r['detail'] or ''}", inline=True, limit=4096)
        screen.print(line)


# ---------------------------------------------------------------------------- sandbox


@sandbox_app.command("build")
def sandbox_build(force: bool = typer.Option(False, "--force", help="Rebuild even if images are current.")) -> None:
    """Build the sandbox image (from Debian packages; no container registry needed)."""
    from devagent.sandbox import build_images, connect

    from devagent.term import shown

    screen = _screen(stderr=True)
    with screen.console.status(shown("building the sandbox image")) as status:
        def progress(line: str) -> None:
            status.update(shown(line, inline=True, limit=120))
            if line.startswith(("step", "built", "building", "base image", "sandbox image")):
                screen.print(shown(line, inline=True))

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
        code = app(standalone_mode=False)
    except UsageError as exc:
        exc.show()
        code = EXIT_USAGE
    except (typer.Abort, KeyboardInterrupt):
        _say("\ninterrupted", stderr=True)
        code = EXIT_INTERRUPTED
    except DevagentError as exc:
        if _debug:
            raise
        # The message can quote the model (a path, a call id): escaped like everything else.
        _say("error: ", str(exc), stderr=True)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except Exception as exc:  # an unexpected bug: one line, traceback only with --debug
        if _debug:
            raise
        _say(f"error: {type(exc).__name__}: ", str(exc), " (run with --debug for the traceback)", stderr=True)
        code = EXIT_ERROR
    sys.exit(code or 0)
