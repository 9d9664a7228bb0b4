"""The `--json` event stream of `task` and `resume`: JSON Lines on stdout, as the run goes.

Every line is one object with `type`, the schema version `v` (SCHEMA_VERSION), `thread` and `at`
(RFC 3339, with the local offset). The last line of a run is its `summary`; a run that fails ends
with an `error` line instead. README's "Events" table lists every type and its fields; a field is
only ever added to a type within one version.

Most events come from the audit log as it is written (Store.listeners), so the stream and
`devagent log` tell the same story; the rest (the model's calls, the end of the turn) come from
the runner's TurnEvents. Nothing here imports rich or writes itself: the CLI hands in the writer
(devagent.term.emit_json_line, which escapes every non-ASCII and control character).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

SCHEMA_VERSION = 1
APPROVAL_TOOLS = ("run_shell", "run_migration")
OUTPUT_LIMIT = 16 * 1024  # characters of a non-command tool's output in a `tool.output` event


def timestamp(at: float) -> str:
    """RFC 3339 with the local offset, to the millisecond: 2026-12-02T17:05:52.123+00:00."""
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="milliseconds")


class JsonLines:
    """Writes events, one per line, flushed at once; tools run on worker threads, so one lock."""

    def __init__(self, write: Callable[[dict[str, Any]], None]) -> None:
        self.write = write
        self.lock = threading.Lock()
        self.thread_id: str | None = None
        self.closed = False  # the reader went away: the run goes on, the stream stops

    def emit(self, type_: str, at: float | None = None, **fields: Any) -> None:
        event = {"type": type_, "v": SCHEMA_VERSION, "thread": fields.pop("thread", self.thread_id),
                 "at": timestamp(time.time() if at is None else at), **fields}
        with self.lock:
            if self.closed:
                return
            try:
                self.write(event)
            except (BrokenPipeError, ValueError):
                self.closed = True


class JsonEvents:
    """TurnEvents for the JSON stream, plus `audit`, the store listener."""

    def __init__(self, out: JsonLines) -> None:
        self.out = out
        self.decided: set[str] = set()  # calls whose decision is already in the stream

    # -- TurnEvents (what the runner says that the audit log does not record)

    def notice(self, text: str) -> None:
        self.out.emit("notice", text=text)

    def tool_call(self, name: str, arguments: str, call_id: str = "") -> None:
        self.out.emit("tool.called", call_id=call_id, tool=name, arguments=arguments,
                      needs_approval=name in APPROVAL_TOOLS)

    def tool_result(self, name: str, output: str, call_id: str = "") -> None:
        if name in APPROVAL_TOOLS:
            return  # `command.finished` carries it, with the exit code
        self.out.emit("tool.output", call_id=call_id, tool=name, output=output[:OUTPUT_LIMIT],
                      output_chars=len(output), truncated=len(output) > OUTPUT_LIMIT)

    def command_started(self, call_id: str, command: str) -> None:
        pass  # `command.finished` names the call

    def command_output(self, text: str) -> None:
        pass  # streamed to the terminal; the stream carries the capped output at the end

    def assistant_message(self, text: str) -> None:
        pass  # the audit log's `message` entry

    def approved_by_rule(self, call_id: str, tool: str, arguments: str) -> None:
        pass  # the audit log's `approved` entry names the rule

    def known_call(self, call_id: str, tool: str, arguments: str) -> None:
        pass  # `tool.called` carried it when it was proposed

    def decision_applied(self, approval: Any) -> None:
        """A decision made before this process (`devagent approve`, `reject`) reaches the run."""
        if approval.call_id in self.decided:
            return
        self.decided.add(approval.call_id)
        self.out.emit("call.decided", decision=approval.status, by=approval.decided_by, reason=approval.reason,
                      call_id=approval.call_id, tool=approval.tool)

    def activity(self, what: str | None) -> None:
        pass

    # -- the CLI's

    def thread_started(self, thread_id: str, branch: str, repo: str, *, resumed: bool, new: bool = False) -> None:
        """`thread.started` (new: a thread created now, else a new task on it) or `thread.resumed`."""
        self.out.thread_id = thread_id
        if resumed:
            self.out.emit("thread.resumed", branch=branch, repo=repo)
        else:
            self.out.emit("thread.started", branch=branch, repo=repo, new=new)

    def turn_ended(self, outcome: Any) -> None:
        """`turn.paused` (with the pending calls, whole) or `turn.finished`, then the `summary`."""
        if outcome.status == "paused":
            self.out.emit("turn.paused", pending=[p.to_json() for p in outcome.pending], usage=outcome.usage)
        else:
            self.out.emit("turn.finished", commit=outcome.commit, usage=outcome.usage,
                          changed_files=outcome.changed_files)
        self.out.emit("summary", **summary(outcome))

    def error(self, message: str, exit_code: int) -> None:
        self.out.emit("error", message=message, exit_code=exit_code)

    # -- the store listener: audit entries as they are written

    def audit(self, entry: dict[str, Any]) -> None:
        event, detail = entry["event"], entry["detail"]
        common = {"at": entry["at"], "thread": entry["thread_id"]}
        call = {"call_id": entry["call_id"], "tool": entry["tool"]}
        if event == "task":
            self.out.emit("turn.started", task=detail.get("task"), **common)
        elif event == "proposed":
            self.out.emit("call.pending", sha256=detail.get("sha256"), **call, **common)
        elif event in ("approved", "rejected", "refused"):
            self.decided.add(entry["call_id"])
            extra = {k: detail[k] for k in ("always", "confirmed", "rules") if detail.get(k)}
            self.out.emit("call.decided", decision=event, by=entry["actor"], reason=detail.get("reason"),
                          **extra, **call, **common)
        elif event == "executing":
            what = {k: detail[k] for k in ("command", "sha256", "database", "path", "statements") if k in detail}
            self.out.emit("command.started", **what, **call, **common)
        elif event == "executed":
            output = str(detail.get("output") or "")
            size = detail.get("total_bytes")
            extra = {k: detail[k] for k in ("result", "statements", "error") if k in detail}
            self.out.emit("command.finished", exit_code=entry["exit_code"], duration_s=entry["duration_s"],
                          timed_out=bool(detail.get("timed_out")),
                          output_bytes=size if isinstance(size, int) else len(output.encode("utf-8", "replace")),
                          output=output, **extra, **call, **common)
        elif event == "interrupted":
            self.out.emit("command.interrupted", note=detail.get("note"), **call, **common)
        elif event == "workspace changed":
            self.out.emit("call.requeued", reason="the workspace changed after the approval", **call, **common)
        elif event == "file changed":
            self.out.emit("file.changed", path=detail.get("path"), bytes=detail.get("bytes"), **call, **common)
        elif event == "message":
            self.out.emit("message", text=detail.get("text") or "", **common)
        elif event == "usage":
            self.out.emit("usage", **{k: v for k, v in detail.items()}, **common)
        # Anything else (workspace fingerprints, rule files read, bound SQL) is bookkeeping: in `log`.


def summary(outcome: Any) -> dict[str, Any]:
    """The last line of a run: how it ended, what it changed and ran, what it cost."""
    return {
        "thread": outcome.thread_id,
        "status": outcome.status,
        "final_output": outcome.final_output,
        "commit": outcome.commit,
        "changed_files": outcome.changed_files,
        "commands": outcome.commands,
        "commands_run": outcome.commands_run,
        "commands_failed": outcome.commands_failed,
        "usage": outcome.usage,
        "thread_usage": outcome.thread_usage,
        "warning": outcome.note,
        "pending": [p.to_json() for p in outcome.pending],
    }


class Fanout:
    """TurnEvents to several watchers (the terminal on stderr and the JSON stream)."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            for sink in self.sinks:
                getattr(sink, name)(*args, **kwargs)

        return call


__all__ = ["JsonEvents", "JsonLines", "Fanout", "SCHEMA_VERSION", "summary", "timestamp"]
