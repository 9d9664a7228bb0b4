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
    workdir: str = "/workspace"
    network: bool = False
    changed_files: list[str] = field(default_factory=list)
    migration_runner: MigrationRunner | None = None
    error: str | None = None  # arguments that cannot run (malformed JSON, missing field)

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
            "changed_files": self.changed_files,
        }
        if self.tool == "run_shell":
            data.update(command=self.command, timeout_s=self.timeout_s)
            if self.migration_runner:
                data["migration_runner"] = asdict(self.migration_runner)
        else:
            data.update(sql=self.sql, path=self.sql_path, database=self.database)
        if self.error:
            data["error"] = self.error
        return data


def parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    try:
        args = json.loads(raw)
    except ValueError as exc:
        return {}, f"the tool call's arguments are not valid JSON ({exc}); it cannot run"
    if not isinstance(args, dict):
        return {}, "the tool call's arguments are not a JSON object; it cannot run"
    return args, None


def build_request(approval: Approval, *, network: bool, default_timeout_s: int,
                  changed_files: list[str] | None = None, database: str | None = None,
                  sql_loader: Any = None) -> ApprovalRequest:
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
        error=error,
    )
    if approval.tool == "run_shell":
        command = args.get("command")
        if not error and not isinstance(command, str):
            req.error = "the run_shell call has no `command` string; it cannot run"
        req.command = command if isinstance(command, str) else ""
        timeout = args.get("timeout_s")
        req.timeout_s = timeout if isinstance(timeout, int) and timeout > 0 else default_timeout_s
        req.migration_runner = detect_migration_runner(req.command)
    elif approval.tool == "run_migration":
        req.database = args.get("database") or database
        req.sql_path = args.get("path") if isinstance(args.get("path"), str) else None
        if isinstance(args.get("sql"), str):
            req.sql = args["sql"]
        elif req.sql_path and sql_loader is not None:
            try:
                req.sql = sql_loader(req.sql_path)
            except Exception as exc:  # shown on the screen; the call cannot run
                req.error = f"cannot read {req.sql_path}: {exc}"
                req.sql = ""
        elif not error:
            req.error = "the run_migration call has neither `sql` nor `path`; it cannot run"
    return req


_RUNNERS: list[tuple[str, re.Pattern[str], Any]] = [
    ("alembic", re.compile(r"(^|[\s;&|])alembic\s+(.*\s)?upgrade\b"),
     lambda words, cmd: _with_flag(cmd, "--sql")),
    ("django", re.compile(r"manage\.py\s+migrate\b"),
     lambda words, cmd: _django_preview(words)),
    ("flyway", re.compile(r"(^|[\s;&|])flyway\s+(.*\s)?migrate\b"),
     lambda words, cmd: cmd.replace("migrate", "info", 1)),
    ("prisma", re.compile(r"prisma\s+migrate\s+(deploy|dev)\b"),
     lambda words, cmd: "npx prisma migrate diff --from-migrations prisma/migrations --to-schema-datamodel prisma/schema.prisma --script"),
    ("rails", re.compile(r"(rails|rake)\s+db:migrate\b"), lambda words, cmd: None),
    ("goose", re.compile(r"(^|[\s;&|])goose\s+.*\bup\b"), lambda words, cmd: None),
    ("sqlx", re.compile(r"sqlx\s+migrate\s+run\b"), lambda words, cmd: None),
    ("knex", re.compile(r"knex\s+migrate:latest\b"), lambda words, cmd: None),
]


def detect_migration_runner(command: str) -> MigrationRunner | None:
    """Spot a known migration runner so the screen can say so and offer a SQL preview."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for name, pattern, preview in _RUNNERS:
        if pattern.search(command):
            return MigrationRunner(name=name, preview_command=preview(words, command))
    return None


def _with_flag(command: str, flag: str) -> str:
    return command if flag in command.split() else f"{command.rstrip()} {flag}"


def _django_preview(words: list[str]) -> str | None:
    # `manage.py migrate app 0002` previews as `manage.py sqlmigrate app 0002`.
    try:
        i = next(i for i, w in enumerate(words) if w.endswith("manage.py"))
    except StopIteration:
        return None
    rest = [w for w in words[i + 2:] if not w.startswith("-")]
    prefix = " ".join(shlex.quote(w) for w in words[: i + 1])
    if len(rest) >= 2:
        return f"{prefix} sqlmigrate {shlex.quote(rest[0])} {shlex.quote(rest[1])}"
    return f"{prefix} showmigrations --plan"
