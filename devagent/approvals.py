"""What a human is asked to approve, built from the exact arguments the model sent.

An `ApprovalRequest` carries the exact command or SQL (never a reformatted copy), the context the
screen must show (cwd, network, timeout, database, files changed since the last command) and the
SHA-256 of what will run. Rendering is the CLI's job; this module decides what there is to show.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from devagent.config import SandboxLimits
from devagent.store import Approval, sha256_text

TOOLS_NEEDING_APPROVAL = ("run_shell", "run_migration")


@dataclass(frozen=True)
class MigrationRunner:
    """A known migration tool spotted in a shell command, and how to preview its SQL."""

    name: str
    preview_command: str | None


@dataclass
class ApprovalRequest:
    thread_id: str
    call_id: str
    tool: str
    arguments: str  # the raw JSON the model sent; its sha256 binds the decision
    arguments_sha256: str
    status: str
    command: str | None = None  # run_shell: exactly what bash -c receives
    timeout_s: int | None = None
    sql: str | None = None  # run_migration: exactly the bytes that will run
    sql_path: str | None = None
    database: str | None = None
    sql_dialect: str = "sqlite"  # how the SQL is analysed for the screen: "sqlite" | "postgres"
    workdir: str = "/workspace"
    network: bool = False
    # Files changed since the last command, ignored ones included (each a str such as
    # "M .env (ignored)"; `workspace.FileChange` entries carry status, path and the mark).
    changed_files: list[str] = field(default_factory=list)
    changes_error: str | None = None  # why that list is incomplete or unknown
    workspace_fingerprint: str | None = None  # the state of the workspace this screen shows
    workspace_notice: str | None = None  # approved before, asked again: the workspace changed
    interrupted_after_s: float | None = None  # it had started when its process died (-1: ran for an unknown time)
    migration_runner: MigrationRunner | None = None
    error: str | None = None  # arguments that cannot run (malformed JSON, missing field)
    # What was read from the thread's database for this screen when the call was proposed (row
    # counts, SQLite columns; `devagent.sql_rowcount`), or None.
    sql_probe: dict[str, Any] | None = None
    batch_index: int = 1  # "1 of 3" when the model proposed several calls at once
    batch_size: int = 1
    # What `a` offers for a run_shell command: the rules that would cover it (policy.ProposedRule),
    # or, when none is offered, why (shown on the screen).
    rule_offer: list[Any] = field(default_factory=list)
    rule_note: str | None = None

    @property
    def notices(self) -> list[str]:
        """Warnings about the workspace the screen shows, one line each."""
        out = [self.workspace_notice] if self.workspace_notice else []
        if self.interrupted_after_s is not None:
            ran = f" after {self.interrupted_after_s:.0f} s" if self.interrupted_after_s >= 0 else ""
            out.append(f"interrupted{ran}: this call was running when its process stopped and did not "
                       "finish; approving it runs it again from the start")
        if self.changes_error:
            out.append(f"files changed since the last command are not fully known: {self.changes_error}")
        return out

    @property
    def payload(self) -> str:
        """The exact text that will run (command or SQL)."""
        return self.command if self.command is not None else (self.sql or "")

    @property
    def sha256(self) -> str:
        return sha256_text(self.payload)

    def to_json(self) -> dict[str, Any]:
        data = {
            "thread": self.thread_id,
            "call_id": self.call_id,
            "tool": self.tool,
            "status": self.status,
            "sha256": self.sha256,
            "arguments_sha256": self.arguments_sha256,
            "workdir": self.workdir,
            "network": self.network,
            "changed_files": [str(f) for f in self.changed_files],
            "changes": [f.to_json() if hasattr(f, "to_json") else {"path": str(f)} for f in self.changed_files],
            "changes_error": self.changes_error,
            "workspace_fingerprint": self.workspace_fingerprint,
            "workspace_notice": self.workspace_notice,
            "interrupted_after_s": self.interrupted_after_s,
        }
        if self.tool == "run_shell":
            data.update(command=self.command, timeout_s=self.timeout_s)
            if self.migration_runner:
                data["migration_runner"] = asdict(self.migration_runner)
        else:
            data.update(sql=self.sql, path=self.sql_path, database=self.database)
            if self.sql:
                from devagent.sql_rowcount import probed_counts

                data["row_counts"] = [{"statement": c.statement, "table": c.table, "touched": c.touched,
                                       "total": c.total, "problem": c.problem, "text": c.describe()}
                                      for c in probed_counts(self.sql, self.sql_probe)]
        if self.error:
            data["error"] = self.error
        return data


def shell_timeout(value: Any, default: int, maximum: int = SandboxLimits.max_timeout_s) -> tuple[int, str | None]:
    """The timeout a run_shell call runs with, read from the raw arguments exactly as the approval
    screen shows it (no lenient coercion of "5", 5.0 or true)."""
    if value is None:
        return default, None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return default, f"timeout_s must be a positive whole number of seconds (got {value!r}); it cannot run"
    return min(value, maximum), None


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    try:
        args = json.loads(raw)
    except ValueError as exc:
        return {}, f"the tool call's arguments are not valid JSON ({exc}); it cannot run"
    if not isinstance(args, dict):
        return {}, "the tool call's arguments are not a JSON object; it cannot run"
    return args, None


@dataclass(frozen=True)
class ShellCall:
    """A run_shell call read from its raw arguments: what the screen shows is what runs."""

    command: str
    timeout_s: int
    error: str | None  # set when the call cannot run exactly as shown


def read_shell_call(raw_arguments: str, default_timeout_s: int) -> ShellCall:
    args, error = parse_arguments(raw_arguments)
    command = args.get("command")
    if not error and not isinstance(command, str):
        error = "the run_shell call has no `command` string; it cannot run"
    command = command if isinstance(command, str) else ""
    timeout_s, timeout_error = shell_timeout(args.get("timeout_s"), default_timeout_s)
    error = error or timeout_error
    if not error and has_lone_surrogate(command):
        # Docker would pass a lone surrogate on as U+FFFD: not the bytes that were approved.
        error = "the command holds a lone surrogate (U+D800..U+DFFF), which cannot run byte for byte as shown"
    return ShellCall(command, timeout_s, error)


def build_request(approval: Approval, *, network: bool, default_timeout_s: int,
                  changed_files: list[str] | None = None, changes_error: str | None = None,
                  workspace_fingerprint: str | None = None, workspace_notice: str | None = None,
                  interrupted_after_s: float | None = None, database: str | None = None,
                  sql_loader: Any = None, sql_bound_sha256: str | None = None,
                  sql_dialect: str = "sqlite", sql_probe: dict[str, Any] | None = None) -> ApprovalRequest:
    args, error = parse_arguments(approval.arguments)
    req = ApprovalRequest(
        thread_id=approval.thread_id,
        call_id=approval.call_id,
        tool=approval.tool,
        arguments=approval.arguments,
        arguments_sha256=approval.sha256,
        status=approval.status,
        network=network,
        changed_files=changed_files or [],
        changes_error=changes_error,
        workspace_fingerprint=workspace_fingerprint,
        workspace_notice=workspace_notice,
        interrupted_after_s=interrupted_after_s,
        error=error,
    )
    if approval.tool == "run_shell":
        call = read_shell_call(approval.arguments, default_timeout_s)
        req.command, req.timeout_s, req.error = call.command, call.timeout_s, call.error
        req.migration_runner = detect_migration_runner(req.command)
    elif approval.tool == "run_migration":
        req.sql_dialect = sql_dialect
        req.sql_probe = sql_probe
        # The thread's database (engine, where, password masked), then the model's `database`
        # argument, which picks a database of that same server (or SQLite file).
        target = args.get("database")
        req.database = f"{database} → {target}" if target and database else (target or database)
        req.sql_path = args.get("path") if isinstance(args.get("path"), str) else None
        if isinstance(args.get("sql"), str):
            req.sql = args["sql"]
        elif req.sql_path and sql_loader is not None:
            try:
                req.sql = sql_loader(req.sql_path)
            except Exception as exc:  # shown on the screen; the call cannot run
                req.error = f"cannot read {req.sql_path}: {exc}"
                req.sql = ""
            if req.sql and sql_bound_sha256 and sha256_text(req.sql) != sql_bound_sha256:
                req.error = (f"{req.sql_path} changed after the call was proposed (it had sha256 "
                             f"{sql_bound_sha256}); it would be refused: reject it and let the agent propose it again")
        elif not error:
            req.error = "the run_migration call has neither `sql` nor `path`; it cannot run"
    return req


_SHELL_OPERATOR = re.compile(r"[;&|\n]")


def _segment_end(command: str, start: int) -> int:
    """Where the simple command running at `start` ends (the next ;, &, | or newline)."""
    m = _SHELL_OPERATOR.search(command, start)
    return m.start() if m else len(command)


def _segment(command: str, m: re.Match[str]) -> tuple[str, list[str]]:
    """The command up to the end of the runner's own invocation, and that invocation's arguments."""
    end = _segment_end(command, m.end())
    try:
        args = shlex.split(command[m.end():end])
    except ValueError:
        args = command[m.end():end].split()
    return command[:end].rstrip(), args


def _add_flag(flag: str) -> Any:
    # Everything before the runner (`cd app &&`, `poetry run`) is kept; what follows it is not.
    def preview(command: str, m: re.Match[str]) -> str | None:
        head, args = _segment(command, m)
        return None if flag in args else f"{head} {flag}"
    return preview


def _replace_verb(new: Any) -> Any:
    """`new`: the replacement subcommand, or a function of the one used."""
    def preview(command: str, m: re.Match[str]) -> str:
        head, _args = _segment(command, m)
        verb = new(m.group("verb")) if callable(new) else new
        return head[:m.start("verb")] + verb + head[m.end("verb"):]
    return preview


def _no_preview(command: str, m: re.Match[str]) -> None:
    return None


# (name, pattern, preview, is-already-a-preview). A preview runs only when the user picks it, as a
# separate command with its own approval. The patterns are compiled on first use (re keeps them):
# `approve` and `reject` start without compiling them all.
_RUNNERS: list[tuple[str, str, Any, Any]] = [
    ("alembic", r"(^|[\s;&|(])alembic\s+(\S+\s+)*?(?P<verb>upgrade|downgrade)\b",
     _add_flag("--sql"), lambda args: "--sql" in args),
    ("django", r"manage\.py\s+(?P<verb>migrate)\b",
     lambda command, m: _django_preview(command, m), lambda args: "--plan" in args),
    ("flyway", r"(^|[\s;&|])flyway\s+(\S+\s+)*?(?P<verb>migrate|undo)\b",
     _replace_verb("info"), None),
    ("liquibase", r"(^|[\s;&|])liquibase\s+(\S+\s+)*?(?P<verb>update|rollback)\b(?![-\w])",
     _replace_verb(lambda verb: f"{verb}-sql"), None),
    ("laravel", r"artisan\s+(?P<verb>migrate(:rollback|:reset|:refresh|:fresh)?)(?![-:\w])",
     _add_flag("--pretend"), lambda args: "--pretend" in args),
    ("prisma", r"prisma\s+migrate\s+(?P<verb>deploy|dev|reset)\b",
     lambda command, m: "npx prisma migrate diff --from-migrations prisma/migrations "
                        "--to-schema-datamodel prisma/schema.prisma --script", None),
    ("rails", r"(rails|rake)\s+db:(?P<verb>migrate|rollback)\b", _no_preview, None),
    ("goose", r"(^|[\s;&|])goose\s+.*\b(?P<verb>up|down)\b", _no_preview, None),
    ("sqlx", r"sqlx\s+migrate\s+(?P<verb>run|revert)\b", _no_preview, None),
    ("knex", r"knex\s+migrate:(?P<verb>latest|up|down|rollback)\b", _no_preview, None),
    ("sequelize", r"sequelize(-cli)?\s+db:(?P<verb>migrate)\b", _no_preview, None),
    ("typeorm", r"typeorm\S*\s+migration:(?P<verb>run|revert)\b", _no_preview, None),
    ("diesel", r"diesel\s+migration\s+(?P<verb>run|redo|revert)\b", _no_preview, None),
    ("dbmate", r"(^|[\s;&|])dbmate\s+(\S+\s+)*?(?P<verb>up|migrate|rollback|down)\b", _no_preview, None),
    ("ecto", r"mix\s+ecto\.(?P<verb>migrate|rollback)\b", _no_preview, None),
]


def detect_migration_runner(command: str) -> MigrationRunner | None:
    """Spot a known migration runner so the screen can say so and offer a SQL preview.

    A runner already invoked in its preview mode (`alembic upgrade head --sql`, `manage.py
    migrate --plan`, `artisan migrate --pretend`) changes nothing and is not flagged.
    """
    for name, pattern, preview, is_preview in _RUNNERS:
        m = re.search(pattern, command)
        if m:
            if is_preview is not None and is_preview(_segment(command, m)[1]):
                return None
            return MigrationRunner(name=name, preview_command=preview(command, m))
    return None


def _django_preview(command: str, m: re.Match[str]) -> str | None:
    # `manage.py migrate app 0002` previews as `manage.py sqlmigrate app 0002`; without a target,
    # `manage.py migrate --plan` lists what would be applied.
    head, args = _segment(command, m)
    prefix = head[:m.start("verb")]
    rest = [w for w in args if not w.startswith("-")]
    if len(rest) >= 2:
        return f"{prefix}sqlmigrate {shlex.quote(rest[0])} {shlex.quote(rest[1])}"
    return f"{head} --plan"