"""The tool functions the model calls. Each delegates to the workspace, the sandbox or migrations.

File tools act on the thread's checkout through `WorkspacePaths` (the one confinement resolver).
`run_shell` and `run_migration` always stop for approval; when they finally execute they check
the store once more, so only a call whose exact arguments a human (or an "always" rule) approved
can run, whatever a saved run blob claims. They also check that the workspace is in the state the
approval was given on, and run one at a time (devagent.execution does all of that). A file tool
call that comes after one of them in the same response is not done until that call has run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agents import FunctionTool, function_tool
from agents.exceptions import AgentsException
from agents.tool_context import ToolContext

from devagent.approvals import read_shell_call
from devagent.events import APPROVAL_TOOLS
from devagent.execution import (
    ToolRuntime,
    WorkspaceChangedError,
    execute_command,
    record_command_state,
    verify_workspace_unchanged,
)
from devagent.paths import FileToolError, PathOutsideWorkspace

READ_LIMIT = 64 * 1024
SEARCH_MATCH_LIMIT = 200
SEARCH_FILE_LIMIT = 2 * 1024 * 1024
SEARCH_TIME_LIMIT_S = 5.0


def _error_to_model(_ctx: Any, error: Exception) -> str | None:
    if isinstance(error, WorkspaceChanged):
        return None  # not for the model: the runner asks the human again
    # Our errors are written for the model; pass them through instead of a generic message.
    return f"error: {error}"


def build_tools(rt: ToolRuntime) -> list[FunctionTool]:
    def in_order(ctx: ToolContext, fn: Callable[[], str]) -> str:
        """A file tool's result, or why it did not run. The SDK runs the calls of a response that
        need no approval while the ones before them wait for it: a read after `make build` would
        read the old files, an edit after a command would change what the command was approved to
        run on. Such a call is not done, and the model is told to send it again."""
        calls = rt.response_calls
        mine = next((n for n, (_tool, call_id) in enumerate(calls) if call_id == ctx.tool_call_id), 0)
        before = [(tool, call_id) for tool, call_id in calls[:mine] if tool in APPROVAL_TOOLS]
        if before:
            tool, call_id = before[0]
            return rt.refuse(ctx, ctx.tool_name, f"not done: it comes after {tool} call {call_id}, which waits "
                             f"for approval; send it again once {call_id} has its result")
        try:
            return fn()
        except (PathOutsideWorkspace, FileToolError) as exc:
            return f"error: {exc}"

    @function_tool(failure_error_function=_error_to_model)
    def read_file(ctx: ToolContext, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        """Read a UTF-8 text file of the workspace, optionally only lines start_line..end_line (1-based)."""

        def read() -> str:
            # Reads no further than what it returns, however large the file.
            window = rt.paths.read_window(path, start_line, end_line, READ_LIMIT)
            return window.text + window.note()

        return in_order(ctx, read)

    @function_tool(failure_error_function=_error_to_model)
    def list_files(ctx: ToolContext, path: str = ".", pattern: str | None = None) -> str:
        """List files under a workspace directory (recursive), optionally filtered by a glob pattern."""

        def listing() -> str:
            # When capped, the list's last entry says how many more files exist.
            return "\n".join(rt.paths.iter_files(path, pattern)) or "(no files)"

        return in_order(ctx, listing)

    @function_tool(failure_error_function=_error_to_model)
    def search(ctx: ToolContext, pattern: str, path: str = ".") -> str:
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

        return in_order(ctx, grep)

    @function_tool(failure_error_function=_error_to_model)
    def write_file(ctx: ToolContext, path: str, content: str) -> str:
        """Create or overwrite a workspace file with content."""

        def write() -> str:
            rt.paths.write_text(path, content)
            return f"wrote {len(content.encode())} bytes to {path}"

        return in_order(ctx, write)

    @function_tool(failure_error_function=_error_to_model)
    def edit_file(ctx: ToolContext, path: str, old: str, new: str) -> str:
        """Replace the exact text `old` (which must occur exactly once) with `new` in a workspace file."""

        def edit() -> str:
            rt.paths.edit_text(path, old, new)
            return f"edited {path}"

        return in_order(ctx, edit)

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
        try:
            return execute_command(rt, ctx.tool_call_id, call.command, call.timeout_s)
        except WorkspaceChangedError as exc:
            raise WorkspaceChanged(str(exc)) from None

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
            try:
                start = verify_workspace_unchanged(rt, ctx.tool_call_id, "run_migration", entered)
            except WorkspaceChangedError as exc:
                raise WorkspaceChanged(str(exc)) from None
            with rt.doing("applying the migration"):
                output = rt.migrate(rt, ctx.tool_call_id, sql=sql, path=path, database=database)
            record_command_state(rt, start)
        return output

    return [read_file, list_files, search, write_file, edit_file, run_shell, run_migration]


class WorkspaceChanged(AgentsException):
    """The SDK-side form of WorkspaceChangedError: it ends the run (the runner asks again)."""


__all__ = ["build_tools", "WorkspaceChanged"]
