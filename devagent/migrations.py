"""SQL migrations: the thread's database, exact-bytes execution in the sandbox, history.

A thread's database is chosen when it starts (`devagent task --database ...`):

* `sqlite` (default): a file `devagent.db` at the root of the thread's workspace, created on first
  use and kept out of the branch (the thread's `info/exclude`).
* `postgres`: a PostgreSQL server of the thread's own, a sidecar container built from Debian's
  packages (Dockerfile.postgres), on a per-thread internal Docker network (no outside access),
  its data in a volume kept across turns. It starts and stops with the thread's sandbox
  container; `devagent discard` removes container, network and volume (all labelled). Its role
  `devagent` owns the database but is not a superuser (`postgres+superuser` asks for one).
* a `postgresql://` URL: the user's own server, used as given (the thread needs `--network`).

`run_migration` runs only what a human approved, byte for byte. Inline `sql` is bound by the
approval itself (the SHA-256 of the call's arguments). For `path`, the file's SHA-256 is recorded
when the call is proposed (`bind_proposed_sql`, called by the runner when it records the pending
call, before anyone is shown the SQL); at execution the file is read once more and refused if its
bytes differ (a file over MAX_SQL_BYTES is never read past that, shown or run). The bytes then go
to `sandbox/migrate.py` inside the thread's container over stdin, together with the byte spans of
the statements as the approval screen split them (`devagent.sql_analysis`). It checks the SHA-256
again and sends each statement to the database as exactly one statement (PostgreSQL: extended
query protocol, with the settings that decide how SQL text is read pinned for its session), in
one transaction, rolled back whole on the first error, with a row in the target database's
`devagent_migrations` table in that same transaction.
Every outcome (applied, failed, refused) is recorded in the store and the audit log.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from devagent.words import count
from devagent.config import SandboxLimits
from devagent.errors import DevagentError, UsageError
from devagent.paths import FileToolError, PathOutsideWorkspace
from devagent.sandbox import WORKDIR
from devagent.sidecar import PG_DB, PG_HOST, PG_PORT, PG_USER, PostgresSidecar, SidecarContainer

MIGRATE_PY = "/usr/local/lib/devagent/migrate.py"
# By absolute path, from root-owned files of the image: a `python3` the sandbox user put earlier
# on PATH (~/.local/bin comes first there) must never be what runs the approved SQL. -I -S:
# nothing the sandbox user installed (user site-packages, .pth files, PYTHON* variables) loads.
MIGRATE_ARGV = ["/usr/bin/python3", "-I", "-S", MIGRATE_PY]
RESULT_MARKER = "DEVAGENT-MIGRATION-RESULT "
BOUND_EVENT = "sql file bound"
PROBED_EVENT = "sql database read"
DEFAULT_SQLITE_FILE = "devagent.db"
MASK = "****"
# The largest migration devagent loads, shows or runs. Showing costs time in the size of the text
# (escaping, statement analysis), so a file above this is not read past it; it cannot be approved
# or run, and the screen says to split it.
MAX_SQL_BYTES = 1 << 20

# Statements that would end (or nest) the transaction devagent wraps around every migration;
# ROLLBACK TO (a savepoint) stays inside it.
_TX_CONTROL = re.compile(
    r"(BEGIN|COMMIT|END|ABORT|START\s+TRANSACTION|PREPARE\s+TRANSACTION"
    r"|ROLLBACK(?!\s+((WORK|TRANSACTION)\s+)?TO\b))\b",
    re.IGNORECASE,
)
# Statements PostgreSQL refuses inside a transaction block: sent alone, as their own transaction.
_PG_OUTSIDE_TX = re.compile(
    r"(CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY|REINDEX\b.*\bCONCURRENTLY"
    r"|VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM|CREATE\s+TABLESPACE|DROP\s+TABLESPACE)\b",
    re.IGNORECASE | re.DOTALL,
)
_LEADING_COMMENTS = re.compile(r"\A(\s+|--[^\n]*(\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_PG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")


class MigrationRefused(Exception):
    """The approved migration cannot run as approved; nothing ran."""


# --------------------------------------------------------------------------- the thread's database


@dataclass(frozen=True)
class Database:
    engine: str  # sqlite | postgres
    kind: str  # workspace (sqlite file) | sidecar (thread's own PostgreSQL) | url (the user's server)
    location: str  # workspace: relative file; url: the URL as given; sidecar: ""
    # sidecar only: the thread's role is a superuser (`--database postgres+superuser`); by default
    # it only owns its database, so it cannot create event triggers, untrusted languages or
    # anything else that would reach beyond that database.
    superuser: bool = False

    @classmethod
    def parse(cls, value: str | None) -> Database:
        text = (value or "sqlite").strip()
        lowered = text.lower()
        if lowered in ("sqlite", "sqlite3"):
            return cls("sqlite", "workspace", DEFAULT_SQLITE_FILE)
        if lowered in ("postgres", "postgresql", "pg"):
            return cls("postgres", "sidecar", "")
        if lowered in ("postgres+superuser", "postgresql+superuser", "pg+superuser"):
            return cls("postgres", "sidecar", "", superuser=True)
        scheme = lowered.split(":", 1)[0]
        if scheme in ("postgres", "postgresql") and "://" in text:
            return cls("postgres", "url", text)
        if scheme in ("sqlite", "sqlite3") and ":" in text:
            # sqlite:///relative/file.db: a file in the thread's workspace.
            rel = text.split(":", 1)[1]
            rel = rel[3:] if rel.startswith("///") else rel.lstrip("/") if rel.startswith("//") else rel
            if not rel or rel.startswith("/") or ".." in rel.split("/"):
                raise UsageError(f"--database {text!r}: a SQLite database must be a file inside the "
                                 "workspace, e.g. sqlite:///data/app.db")
            return cls("sqlite", "workspace", rel)
        raise UsageError(
            f"--database {text!r} is not supported: use sqlite (the default: a file in the thread's "
            "workspace), postgres (a PostgreSQL server for the thread; postgres+superuser if its role "
            "must be a superuser), or a postgresql:// URL"
        )

    def display(self, network: bool, name: str | None = None) -> str:
        """What the approval screen and the history show: engine, where, password masked."""
        if self.kind == "workspace":
            return f"sqlite: {name or self.location} (a file in the thread's workspace)"
        if self.kind == "sidecar":
            role = f"; {PG_USER} is a superuser" if self.superuser else ""
            return (f"postgres: {PG_USER}:{MASK}@{PG_HOST}:{PG_PORT}/{name or PG_DB} "
                    f"(the thread's own PostgreSQL server, internal network{role})")
        shown = mask_url(self.location) + (f" (database {name})" if name else "")
        if network:
            return f"{shown} (your database, reached over the network)"
        return f"{shown} (your database: this thread has no network, so it cannot reach it; start the thread with --network)"

    def label(self, name: str | None = None) -> str:
        """Short name for the history and the model: engine and where, password masked."""
        if self.kind == "workspace":
            return f"sqlite:{name or self.location}"
        if self.kind == "sidecar":
            return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name or PG_DB} (thread server)"
        return mask_url(self.location) + (f" (database {name})" if name else "")

    def libpq_env(self) -> dict[str, str]:
        """PG* variables so that a plain `psql` in the sandbox reaches this database (the password
        of the thread's own server is in ~/.pgpass; a URL's own password is passed as given)."""
        if self.kind == "sidecar":
            return {"PGHOST": PG_HOST, "PGPORT": str(PG_PORT), "PGUSER": PG_USER, "PGDATABASE": PG_DB}
        if self.kind == "url":
            from urllib.parse import unquote, urlsplit

            url = urlsplit(self.location)
            env = {"PGHOST": url.hostname, "PGPORT": str(url.port) if url.port else None,
                   "PGUSER": unquote(url.username) if url.username else None,
                   "PGPASSWORD": unquote(url.password) if url.password else None,
                   "PGDATABASE": unquote(url.path.lstrip("/")) or None}
            return {k: v for k, v in env.items() if v}
        return {}

    def describe(self, network: bool) -> str:
        """The database, as the agent's instructions present it."""
        no_tx = ("Do not write BEGIN/COMMIT: each migration already runs in its own transaction and is "
                 "recorded in the table devagent_migrations")
        if self.kind == "workspace":
            return (f"SQLite: the file {self.location} at the workspace root, created on first use and kept "
                    f"out of git; the `database` argument may name another SQLite file in the workspace. "
                    f"Inspect it with `sqlite3 {self.location}` in run_shell. {no_tx}")
        if self.kind == "sidecar":
            return (f"PostgreSQL 15, a server of this thread only: host {PG_HOST}, port {PG_PORT}, database "
                    f"{PG_DB}, user {PG_USER}; in run_shell `psql -h {PG_HOST} -U {PG_USER} {PG_DB}` connects "
                    f"(the password is in ~/.pgpass, so DATABASE_URL=postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB} "
                    f"works too); the `database` argument may name another database on it. "
                    + (f"{PG_USER} is a superuser. " if self.superuser else
                       f"{PG_USER} owns database {PG_DB} and may create databases, but is not a superuser "
                       "(trusted extensions such as pgcrypto or citext work; untrusted ones do not). ")
                    + no_tx)
        reach = "" if network else (" This thread has no network access, so migrations cannot reach it: tell the "
                                    "user to start a thread with --network.")
        return (f"PostgreSQL at {mask_url(self.location)}, the user's own database (its password is not shown "
                f"to you).{reach} {no_tx}")


def mask_url(url: str) -> str:
    """The URL with its password (in the authority or a password= parameter) replaced by ****."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", rf"\1{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{host}"
    query = re.sub(r"(?i)((?:^|&)password=)[^&]*", rf"\1{MASK}", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def attach_migrations(runtime: Any, settings: dict[str, Any]) -> str:
    """Wire run_migration for this thread; returns how the agent should think of its database.

    For `--database postgres` the runtime's container is replaced (before anything started it)
    by one that joins the thread's internal network and starts/stops the PostgreSQL sidecar
    together with the sandbox.
    """
    db = Database.parse(settings.get("database"))
    updates: dict[str, Any] = {}
    password: str | None = None
    if db.kind == "sidecar":
        password = settings.get("postgres_password") or secrets.token_hex(16)
        if settings.get("postgres_password") != password:
            updates["postgres_password"] = password
        current = runtime.container
        sidecar = PostgresSidecar(current.client, runtime.thread_id, password, superuser=db.superuser)
        sidecar.check_image()
        spec = replace(current.spec, internal_network=sidecar.network)
        runtime.container = SidecarContainer(current.client, spec, sidecar)
    elif db.kind == "workspace":
        _exclude_from_git(runtime, db.location)
    display = db.display(bool(runtime.network))
    if settings.get("database_display") != display:
        updates["database_display"] = display
    if updates:
        stored = runtime.store.thread(runtime.thread_id).settings
        runtime.store.update_settings(runtime.thread_id, {**stored, **updates})
        settings.update(updates)  # the runner shows this turn's approvals from the same dict
    runtime.migrate = Migrator(db, password)
    return db.describe(bool(runtime.network))


# --------------------------------------------------------------------------- reading a migration file


def read_sql_file(paths: Any, rel: str) -> bytes:
    """The bytes of a migration file, never reading more than MAX_SQL_BYTES + 1 of it."""
    data = paths.read_bytes(rel, MAX_SQL_BYTES + 1)
    if len(data) > MAX_SQL_BYTES:
        raise FileToolError(f"{rel} is larger than {MAX_SQL_BYTES // (1 << 20)} MiB, the most a migration may be: "
                            "split it into smaller migrations")
    return data


def load_sql_for_display(paths: Any, rel: str) -> str:
    """A migration file's text for the approval screen: bounded, and only what could run.

    A file that is too large, holds a NUL byte, or is not UTF-8 raises FileToolError (the screen
    shows the reason and the call cannot be approved); its size is never loaded past the limit.
    """
    data = read_sql_file(paths, rel)
    if b"\0" in data:
        raise FileToolError(f"{rel} contains a NUL byte, which no database can receive: it cannot run")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileToolError(f"{rel} is not UTF-8 text: it cannot run") from None


# --------------------------------------------------------------------------- binding a file's content


def bind_proposed_sql(runtime: Any, call_id: str, tool: str, arguments: str) -> None:
    """Record what the screen of a migration rests on, when the call is proposed.

    The runner calls this when it records a pending call, before the SQL is shown to anyone:
    the SHA-256 of a path migration's file (execution refuses the file unless its bytes still
    have this digest), and what was read from the thread's database for the screen (row counts
    of UPDATE/DELETE, the columns of SQLite tables a rebuild replaces; see `probe_proposed_sql`).
    Recorded once per call.
    """
    if tool != "run_migration":
        return
    try:
        args = json.loads(arguments)
    except ValueError:
        return
    if not isinstance(args, dict):
        return
    store, tid = runtime.store, runtime.thread_id
    text: str | None = args["sql"] if isinstance(args.get("sql"), str) else None
    if text is None and isinstance(args.get("path"), str):
        path = args["path"]
        try:
            data = read_sql_file(runtime.paths, path)
            detail: dict[str, Any] = {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            text = data.decode("utf-8")
        except (PathOutsideWorkspace, FileToolError, OSError) as exc:
            detail = {"path": path, "error": str(exc)}
        except UnicodeDecodeError:
            text = None
        if not store.call_events(tid, call_id, BOUND_EVENT):
            store.audit(tid, BOUND_EVENT, call_id=call_id, tool="run_migration", actor="devagent", detail=detail)
        else:
            text = None  # bound (and probed) when it was first proposed
    if text is not None and proposed_probe(store, tid, call_id) is None:
        probe_proposed_sql(runtime, call_id, text, args.get("database"))


def probe_proposed_sql(runtime: Any, call_id: str, text: str, database: Any) -> dict[str, Any] | None:
    """Count the rows each UPDATE/DELETE (and SQLite REPLACE) would touch, and read the columns of
    SQLite tables a DROP TABLE may rebuild, on the thread's database, read-only, in its container,
    with a short timeout; recorded for the call. Nothing to count: nothing runs, nothing recorded."""
    from devagent.sql_rowcount import probe_job, probe_plan, probe_record

    migrate = getattr(runtime, "migrate", None)
    if migrate is None or len(text) > MAX_SQL_BYTES:
        return None
    engine = migrate.db.engine
    plans, schema = probe_plan(text, engine)
    if not plans and not schema:
        return None
    job, queries = probe_job(plans, schema)
    output, failure = _run_probe(runtime, migrate, database, job)
    record = probe_record(text, engine, plans, queries, output, failure)
    runtime.store.audit(runtime.thread_id, PROBED_EVENT, call_id=call_id, tool="run_migration", actor="devagent",
                        detail=record)
    return record


def _run_probe(runtime: Any, migrate: Migrator, database: Any, job: dict[str, Any]) -> tuple[dict | None, str | None]:
    """Run a probe job in the thread's container: (its output, or why there is none)."""
    from devagent.sql_rowcount import PROBE_TIMEOUT_MS, parse_probe_output, probe_script

    try:
        target = migrate.target(runtime, database)
    except MigrationRefused as exc:
        return None, str(exc)
    job = {**job, "engine": target.engine, "target": target.sqlite_path,
           "connect": [list(kv) for kv in target.connect]}
    doing = getattr(runtime, "doing", None)
    try:
        with doing("reading the database for the screen") if doing else _nothing():
            result = runtime.ensure_container().exec(
                "devagent-probe", argv=[*MIGRATE_ARGV[:3], "-c", probe_script()], stdin=json.dumps(job).encode(),
                timeout_s=15 + len(job["queries"]) * PROBE_TIMEOUT_MS / 1000)
    except DevagentError as exc:
        return None, str(exc)
    except Exception as exc:  # Docker trouble: the screen says it could not count
        return None, f"{type(exc).__name__}: {exc}"
    output = parse_probe_output(result.output)
    if output is None:
        return None, "timed out" if result.timed_out else f"the probe failed (exit code {result.exit_code})"
    return output, None


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def proposed_probe(store: Any, thread_id: str, call_id: str) -> dict[str, Any] | None:
    """What was read from the database for this call's screen (the first probe counts)."""
    events = store.call_events(thread_id, call_id, PROBED_EVENT)  # one index lookup, not the whole log
    return events[0]["detail"] if events else None


def bound_sql_digest(store: Any, thread_id: str, call_id: str) -> str | None:
    """The SHA-256 a path migration's file had when the call was proposed (None if not bound)."""
    return _bound_digests(store.call_events(thread_id, call_id, BOUND_EVENT)).get(call_id)


def _bound_digests(log: list[dict[str, Any]]) -> dict[str, str | None]:
    """Call id -> the file digest bound when it was proposed (the first binding counts)."""
    bound: dict[str, str | None] = {}
    for e in log:
        if e["event"] == BOUND_EVENT and e["call_id"] not in bound:
            bound[e["call_id"]] = e["detail"].get("sha256")
    return bound


def _approved_file_digests(store: Any, thread_id: str, call_id: str) -> tuple[set[str], str]:
    """The file digests a human approved for this call, and by whom (the user, or their rule)."""
    approval = store.approval(thread_id, call_id)
    if approval is not None and (approval.decided_by or "").startswith("rule"):
        log = store.audit_log(thread_id)
        bound = _bound_digests(log)
        # An "approve always" rule covers this exact path *and* the content approved back then.
        from devagent.store import rule_digest

        key = rule_digest(approval.arguments)
        sources = {e["call_id"] for e in log if e["event"] == "approved" and e["detail"].get("always")
                   and (row := store.approval(thread_id, e["call_id"])) is not None
                   and rule_digest(row.arguments) == key}
        return {d for c in sources if (d := bound.get(c))}, "the user's 'approve always' rule"
    digest = bound_sql_digest(store, thread_id, call_id)
    return ({digest} if digest else set()), "the user"


# --------------------------------------------------------------------------- execution


@dataclass(frozen=True)
class Target:
    engine: str
    label: str
    sqlite_path: str | None = None  # inside the container
    connect: tuple[tuple[str, str], ...] = ()  # libpq keywords (the first dbname may be a URL)


class Migrator:
    """`runtime.migrate`: runs one approved migration and says what happened, for the model."""

    def __init__(self, db: Database, password: str | None) -> None:
        self.db = db
        self.password = password

    def __call__(self, rt: Any, call_id: str, *, sql: str | None = None, path: str | None = None,
                 database: str | None = None) -> str:
        store, tid = rt.store, rt.thread_id
        display = self.db.label()
        digest, statements = "", 0
        try:
            target = self.target(rt, database)
            display = target.label
            data, source = self.approved_bytes(rt, call_id, sql, path)
            digest = hashlib.sha256(data).hexdigest()
            text = data.decode("utf-8")
            statements, outside_tx, starts, spans = self.check_script(text, target.engine)
            probe = self.probe_still_holds(rt, call_id, text, database)
            refusal = rt.confirmation_refusal(call_id, text, target.engine, probe)  # destructive SQL: typed names
            if refusal:
                raise MigrationRefused(refusal)
        except MigrationRefused as exc:
            return self._refuse(rt, call_id, str(exc), display, digest, path, statements)

        store.mark_status(tid, call_id, "running")
        store.audit(tid, "executing", call_id=call_id, tool="run_migration", actor="devagent",
                    detail={"sha256": digest, "database": display, "path": path, "statements": statements,
                            "outside_transaction": outside_tx})
        header = {"engine": target.engine, "target": target.sqlite_path,
                  "connect": [list(kv) for kv in target.connect], "sha256": digest, "call_id": call_id,
                  "thread_id": tid, "source": source, "outside_transaction": outside_tx, "spans": spans}
        started = time.monotonic()
        try:
            result = rt.ensure_container().exec(
                f"devagent-migrate {target.engine} ({source})", argv=MIGRATE_ARGV,
                stdin=json.dumps(header).encode() + b"\n" + data, timeout_s=SandboxLimits().default_timeout_s,
            )
            outcome = _parse_outcome(result)
            if getattr(rt, "aborted", False) and outcome.get("unreported"):
                # Ctrl-C killed it before it reported: the open transaction is rolled back by the
                # database. Left "running", so `devagent resume` asks for the call again.
                store.audit(tid, "interrupted", call_id=call_id, tool="run_migration", actor="user",
                            detail={"note": "killed by Ctrl-C while running; not committed", "sha256": digest},
                            duration_s=round(time.monotonic() - started, 3))
                return "interrupted by the user; the migration was killed before it committed"
        except Exception as exc:  # Docker trouble: reported like any failure (Ctrl-C still propagates)
            reason = str(exc) if isinstance(exc, DevagentError) else f"{type(exc).__name__}: {exc}"
            outcome = {"result": "failed", "statements": 0, "rolled_back": True,
                       "error": f"the migration could not run in the sandbox: {reason}"}
        duration = round(time.monotonic() - started, 3)
        status = outcome.get("result", "failed")
        message = _for_model(outcome, display, digest, text, statements, starts)
        # Applied: the statements that ran; otherwise: the statements the migration holds.
        count = int(outcome.get("statements") or 0) if status == "applied" else statements
        store.record_migration(tid, call_id, display, digest, count, status, _summary(outcome),
                               outcome.get("duration_s") or duration)
        store.audit(tid, "executed", call_id=call_id, tool="run_migration", actor="devagent",
                    detail={"result": status, "output": message, "sha256": digest, "database": display,
                            "statements": outcome.get("statements"), "error": outcome.get("error"),
                            "history_id": outcome.get("history_id")},
                    exit_code=0 if status == "applied" else 1, duration_s=duration)
        store.mark_status(tid, call_id, "done")
        return message

    # -- steps

    def target(self, rt: Any, database: str | None) -> Target:
        name = database.strip() if isinstance(database, str) and database.strip() else None
        if name and "://" in name:
            raise MigrationRefused("`database` names a database of this thread's server, not a URL; "
                                   "migrations cannot be pointed at another server")
        network = bool(rt.network)
        if self.db.engine == "sqlite":
            rel = name or self.db.location
            try:
                real = rt.paths.resolve(rel)
                rel = rt.paths.relative(real)
            except PathOutsideWorkspace as exc:
                raise MigrationRefused(f"database file: {exc}") from None
            _exclude_from_git(rt, rel)
            return Target("sqlite", self.db.label(rel),
                          sqlite_path=f"{WORKDIR}/{rel}")
        if name and not _PG_NAME.fullmatch(name):
            raise MigrationRefused(f"`database` must be a plain database name, not {name!r}")
        common = (("application_name", "devagent-migrate"), ("client_encoding", "UTF8"),
                  ("connect_timeout", "15"))
        if self.db.kind == "sidecar":
            # sslmode=disable: the server is on the thread's internal network and has no TLS; libpq
            # then reads no certificate or key files from the sandbox user's home either.
            connect = (("dbname", name or PG_DB), ("host", PG_HOST), ("port", str(PG_PORT)),
                       ("user", PG_USER), ("password", self.password or ""), ("sslmode", "disable"), *common)
            return Target("postgres", self.db.label(name), connect=connect)
        if not network:
            raise MigrationRefused(
                f"this thread has no network (it was started without --network), so "
                f"{mask_url(self.db.location)} cannot be reached; start a thread with --network"
            )
        # The URL's own `options` travel as a keyword of their own, so that the runner can add
        # the settings it pins to them instead of replacing them.
        url_options = parse_qs(urlsplit(self.db.location).query).get("options", [])
        connect = (("dbname", self.db.location), *((("dbname", name),) if name else ()), *common,
                   *((("options", " ".join(url_options)),) if url_options else ()))
        return Target("postgres", self.db.label(name), connect=connect)

    def approved_bytes(self, rt: Any, call_id: str, sql: Any, path: Any) -> tuple[bytes, str]:
        """The bytes to run: inline SQL (bound by the approval), or the file if it is unchanged."""
        if isinstance(sql, str) and path is None:
            try:
                data = sql.encode("utf-8")
            except UnicodeEncodeError:
                raise MigrationRefused("the SQL is not valid UTF-8 text") from None
            if len(data) > MAX_SQL_BYTES:
                raise MigrationRefused(f"the SQL is larger than {MAX_SQL_BYTES // (1 << 20)} MiB, the most a "
                                       "migration may be; split it into smaller migrations")
            return data, "inline"
        if not isinstance(path, str) or sql is not None:
            raise MigrationRefused("pass exactly one of `sql` (the SQL text) or `path` (a .sql file in the workspace)")
        if not path.lower().endswith(".sql"):
            raise MigrationRefused(f"{path!r} is not a .sql file")
        try:
            data = read_sql_file(rt.paths, path)
        except (PathOutsideWorkspace, FileToolError) as exc:
            raise MigrationRefused(f"cannot read the migration file: {exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        approved, by = _approved_file_digests(rt.store, rt.thread_id, call_id)
        if not approved:
            raise MigrationRefused(
                f"the content of {path} was not recorded when the migration was proposed, so it cannot be "
                "verified; propose the migration again"
            )
        if digest not in approved:
            raise MigrationRefused(
                f"{path} changed after it was shown for approval (approved by {by}: sha256 "
                f"{', '.join(sorted(d[:16] for d in approved))}…, now {digest[:16]}…). "
                "Propose the migration again so the user can approve the current content"
            )
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise MigrationRefused(f"{path} is not UTF-8 text") from None
        return data, path

    def probe_still_holds(self, rt: Any, call_id: str, text: str, database: str | None) -> dict[str, Any] | None:
        """The probe the screen showed. When the columns it read made a table rebuild lose less
        than it seemed (so fewer names to type), they are read again now: if that verdict would
        differ, the database changed since the screen and the migration is refused."""
        from devagent.sql_rowcount import probe_record, probed_analysis, probed_schema

        probe = proposed_probe(rt.store, rt.thread_id, call_id)
        if probed_schema(text, probe) is None:
            return probe
        shown_words = probed_analysis(text, self.db.engine, probe).confirmation_words
        if shown_words == probed_analysis(text, self.db.engine, None).confirmation_words:
            return probe  # the columns changed nothing on the screen
        output, failure = _run_probe(rt, self, database, {"timeout_ms": 2000, "queries": [], "schema": True})
        now = probe_record(text, self.db.engine, [], [], output, failure)
        if failure or probed_analysis(text, self.db.engine, now).confirmation_words != shown_words:
            raise MigrationRefused("the tables of the database changed since the migration was shown (or could "
                                   "not be read again), so what it loses may differ from the screen; propose it "
                                   "again")
        return probe

    def check_script(self, text: str, engine: str) -> tuple[int, bool, list[int], list[list[int]]]:
        """Statement count, whether it must run outside a transaction (PostgreSQL only), where
        each statement starts (to name the one an error position points at), and the byte spans
        of the statements: the very split the approval screen showed, which the runner in the
        sandbox sends to the database one statement at a time."""
        from devagent.sql_analysis import analyze_sql

        if "\0" in text:
            # libpq and SQLite stop reading at a NUL byte: what follows it would silently not run.
            raise MigrationRefused("the SQL contains a NUL byte, which neither PostgreSQL nor SQLite can receive")
        analysis = analyze_sql(text, engine)
        if not analysis.statements:
            raise MigrationRefused("the migration contains no SQL statement")
        heads = [_LEADING_COMMENTS.sub("", st.text, count=1) for st in analysis.statements]
        for st, head in zip(analysis.statements, heads):
            if _TX_CONTROL.match(head):
                raise MigrationRefused(
                    f"statement {st.index} ({st.kind}) controls the transaction; devagent runs every migration "
                    "in one transaction of its own, so remove BEGIN/COMMIT/ROLLBACK and propose it again"
                )
        outside = False
        if engine == "postgres":
            flagged = [st for st, head in zip(analysis.statements, heads) if _PG_OUTSIDE_TX.match(head)]
            if flagged and len(analysis.statements) > 1:
                raise MigrationRefused(
                    f"statement {flagged[0].index} ({flagged[0].kind}) cannot run inside a transaction on "
                    "PostgreSQL; propose it as a migration of its own (it then runs alone, outside a transaction)"
                )
            outside = bool(flagged)
        return (len(analysis.statements), outside, [st.start for st in analysis.statements],
                byte_spans(text, [(st.start, st.end) for st in analysis.statements]))

    def _refuse(self, rt: Any, call_id: str, reason: str, display: str, digest: str, path: Any,
                statements: int) -> str:
        store, tid = rt.store, rt.thread_id
        message = f"refused: {reason}. Nothing ran."
        store.audit(tid, "refused", call_id=call_id, tool="run_migration", actor="devagent",
                    detail={"reason": message, "sha256": digest, "path": path, "database": display})
        store.record_migration(tid, call_id, display, digest, statements, "refused", reason[:300], 0.0)
        store.mark_status(tid, call_id, "done")
        return message


def byte_spans(text: str, spans: list[tuple[int, int]]) -> list[list[int]]:
    """Character spans of `text` as spans of its UTF-8 bytes (one pass over the text)."""
    out: list[list[int]] = []
    char, byte = 0, 0
    for start, end in spans:
        byte += len(text[char:start].encode("utf-8"))
        first = byte
        byte += len(text[start:end].encode("utf-8"))
        char = end
        out.append([first, byte])
    return out


def _parse_outcome(result: Any) -> dict[str, Any]:
    for line in reversed(result.output.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                return json.loads(line[len(RESULT_MARKER):])
            except ValueError:
                break
    if result.timed_out:
        return {"result": "failed", "statements": 0, "rolled_back": True, "unreported": True,
                "error": f"timed out after {result.duration_s:.0f}s and was killed before it committed; "
                         "the database rolls the open transaction back"}
    tail = result.output.strip()[-800:] or "no output"
    return {"result": "failed", "statements": 0, "unreported": True,
            "error": f"the migration runner failed (exit code "
            f"{result.exit_code}): {tail}"}


def _summary(outcome: dict[str, Any]) -> str:
    """One short line for `devagent migrations`."""
    if outcome.get("result") == "applied":
        how = "alone, outside a transaction" if outcome.get("outside_transaction") else "one transaction"
        return f"{how}; devagent_migrations id {outcome.get('history_id')}"
    error = (outcome.get("error") or "unknown error").strip().splitlines()[0]
    where = f"statement {outcome['failed_statement']}: " if outcome.get("failed_statement") else ""
    return f"{where}{error}"[:300]


def _for_model(outcome: dict[str, Any], display: str, digest: str, sql: str, planned: int,
               starts: list[int]) -> str:
    notices = "".join(f"\nnotice: {n}" for n in outcome.get("notices") or [])
    if outcome.get("result") == "applied":
        how = ("alone, outside a transaction (PostgreSQL cannot run it inside one)"
               if outcome.get("outside_transaction") else "in one transaction")
        # The first line is the result line on the screen: short enough for one terminal line.
        text = (f"applied: {count(outcome.get('statements') or 0, 'statement')} {how} to {display} in "
                f"{outcome.get('duration_s', 0):.2f}s\nsha256 {digest}; recorded in devagent_migrations "
                f"(id {outcome.get('history_id')})")
        if outcome.get("warning"):
            text += f"\nwarning: {outcome['warning']}"
        return text + notices
    where = ""
    failed = outcome.get("failed_statement")
    position = outcome.get("position")
    if isinstance(position, int) and 0 < position <= len(sql) + 1:
        # PostgreSQL points at a character of the whole script: a syntax error there means the
        # server rejected the script before running any of it.
        failed = max([i for i, start in enumerate(starts, 1) if start <= position - 1] or [1])
    if failed:
        where = f" at statement {failed} of {planned}"
        if isinstance(position, int) and position > 0:
            where += f" (line {sql[:position - 1].count(chr(10)) + 1})"
    text = f"failed{where}: {outcome.get('error') or 'unknown error'}"
    if outcome.get("failed_sql"):
        text += f"\nstatement: {outcome['failed_sql']}"
    if outcome.get("rolled_back", True):
        text += f"\nThe whole migration was rolled back: nothing changed in {display}."
    else:
        text += f"\nWARNING: the transaction was ended early; earlier statements may be committed in {display}."
    return text + notices


def _exclude_from_git(runtime: Any, rel: str) -> None:
    """Keep a SQLite database (and its journals) out of the thread's commits."""
    exclude = runtime.workspace.git_dir / "info" / "exclude"
    escaped = re.sub(r"([*?\[\\])", r"\\\1", rel)
    wanted = [f"/{escaped}{suffix}" for suffix in ("", "-journal", "-wal", "-shm")]
    try:
        existing = exclude.read_text().splitlines() if exclude.exists() else []
        missing = [line for line in wanted if line not in existing]
        if missing:
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a") as f:
                if existing and not any(line.startswith("# devagent") for line in existing):
                    f.write("\n")
                if not any(line.startswith("# devagent") for line in existing):
                    f.write("# devagent: the thread's SQLite databases stay out of the branch\n")
                f.write("".join(f"{line}\n" for line in missing))
    except OSError:
        pass  # at worst the database file is committed with the turn


__all__ = ["attach_migrations", "bind_proposed_sql", "Database", "load_sql_for_display", "Migrator", "mask_url"]
