"""`devagent log` as text: one audit event per line, in words a reviewer reads.

Each line is (time, event, call id, parts): the parts are plain strings from the audit log (model
and workspace text among them), for the CLI to escape when it prints them. Bookkeeping entries
(workspace fingerprints, bound SQL digests) are left out; `log --json` has everything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from devagent.words import count
from devagent.usage import usage_line

HIDDEN = frozenset({"workspace seen", "sql file bound"})


@dataclass
class LogLine:
    at: str  # local time with its UTC offset
    event: str
    call_id: str
    parts: list[str]  # shown one after another, two spaces apart; newlines in them shown as ⏎
    output: str | None = None  # what the command printed (as the model got it), for --output
    extra: list[str] = field(default_factory=list)  # dim details: who decided, exit, duration


def when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(at))


def log_lines(entries: list[dict[str, Any]]) -> list[LogLine]:
    commands = {e["call_id"]: e["detail"].get("command") for e in entries if e["event"] == "executing"}
    return [line for e in entries if (line := _line(e, commands)) is not None]


def _line(e: dict[str, Any], commands: dict[str, Any]) -> LogLine | None:
    event, detail = e["event"], e["detail"] or {}
    if event in HIDDEN:
        return None
    line = LogLine(when(e["at"]), event, e["call_id"] or "", [])
    tool = e["tool"] or ""
    if event == "task":
        line.parts = [str(detail.get("task") or "")]
    elif event == "proposed":
        line.parts = [tool, _payload(tool, detail.get("arguments") or "")]
    elif event in ("approved", "rejected", "refused"):
        line.extra = [f"by {e['actor']}"] if e["actor"] else []
        if detail.get("always"):
            line.extra.append("always")
        if detail.get("confirmed"):
            line.extra.append("confirmed " + ", ".join(detail["confirmed"]))
        line.parts = [tool] + ([str(detail["reason"])] if detail.get("reason") else [])
    elif event == "executing":
        line.parts = [tool, str(detail.get("command") or _sql(detail))]
    elif event == "executed":
        line.extra = [f"exit {e['exit_code'] if e['exit_code'] is not None else 'none (timed out)'}"]
        if e["duration_s"] is not None:
            line.extra.append(f"{e['duration_s']:.2f}s")
        if isinstance(detail.get("total_bytes"), int):
            line.extra.append(f"{detail['total_bytes']:,} bytes of output")
        if detail.get("result"):
            line.extra.append(str(detail["result"]))
        line.parts = [tool, str(commands.get(e["call_id"]) or _sql(detail))]
        line.output = str(detail.get("output") or "")
    elif event == "file changed":
        size = f" ({detail['bytes']:,} bytes)" if isinstance(detail.get("bytes"), int) else ""
        line.parts = [tool, str(detail.get("path") or "") + size]
    elif event == "message":
        line.parts = [str(detail.get("text") or "")]
    elif event == "usage":
        line.parts = [usage_line(detail) + (f" · {detail['model']}" if detail.get("model") else "")]
    elif event in ("turn finished", "turn paused"):
        pieces = []
        if detail.get("commit"):
            pieces.append(f"commit {str(detail['commit'])[:10]}")
        if detail.get("pending"):
            pieces.append(f"{count(len(detail['pending']), 'call')} {'waits' if len(detail['pending']) == 1 else 'wait'}: " + ", ".join(detail["pending"]))
        if detail.get("usage"):
            pieces.append("tokens " + usage_line(detail["usage"]))
        line.parts = [" · ".join(pieces)]
    elif event == "rules":
        line.parts = ["rule files: " + ", ".join(f"{f.get('path')} (sha256 {str(f.get('sha256'))[:12]})"
                                                 for f in detail.get("files") or [])]
    else:
        line.extra = [f"by {e['actor']}"] if e["actor"] else []
        text = (detail.get("command") or detail.get("arguments") or detail.get("reason") or detail.get("note")
                or detail.get("turn") or detail.get("repo") or "")
        line.parts = [tool, str(text)] if tool else [str(text)]
    line.parts = [p for p in line.parts if p]
    return line


def _payload(tool: str, arguments: str) -> str:
    """The exact command (or SQL, or file) of a proposed call; else its raw arguments."""
    from devagent.approvals import parse_arguments

    args, _error = parse_arguments(arguments)
    if tool == "run_shell" and isinstance(args.get("command"), str):
        return args["command"]
    if tool == "run_migration":
        return str(args.get("sql") or args.get("path") or arguments)
    return arguments


def _sql(detail: dict[str, Any]) -> str:
    if detail.get("path"):
        return f"SQL {detail['path']}"
    return f"SQL sha256 {str(detail.get('sha256') or '')[:12]}" if detail.get("sha256") else ""
