"""SQLite under DEVAGENT_HOME: threads, paused runs, approvals, remembered rules, audit log.

The store, not the saved run blob, is the source of truth for decisions: every approval is bound
to (thread, call id, sha256 of the exact arguments). Each write is one transaction (the writes of
one step of a call can share one: `batch`), so a crash mid-write leaves the previous good state.
WAL with synchronous=NORMAL: a commit survives a crash of devagent (SIGKILL included); only a crash
of the machine itself may lose the last commits. The schema is versioned and migrates forward.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devagent.errors import StateCorrupted, ThreadBusy, ThreadNotFound

SCHEMA_VERSION = 4

# Each entry upgrades the schema from version i to i+1. Never edit an entry once released.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE threads (
        id TEXT PRIMARY KEY,
        repo TEXT NOT NULL,
        branch TEXT NOT NULL,
        base_commit TEXT NOT NULL,
        state TEXT NOT NULL,               -- running | paused | done | failed
        settings TEXT NOT NULL,            -- JSON: model, base_url, network, database, max_turns
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE runs (
        thread_id TEXT PRIMARY KEY REFERENCES threads(id) ON DELETE CASCADE,
        task TEXT NOT NULL,
        state_blob TEXT,                   -- the SDK's RunState, saved at every pause
        saved_at REAL NOT NULL
    );
    CREATE TABLE approvals (
        thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        call_id TEXT NOT NULL,
        tool TEXT NOT NULL,
        arguments TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        status TEXT NOT NULL,              -- pending | approved | rejected | done
        reason TEXT,
        decided_by TEXT,
        created_at REAL NOT NULL,
        decided_at REAL,
        PRIMARY KEY (thread_id, call_id)
    );
    CREATE TABLE rules (
        thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        tool TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        arguments TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (thread_id, tool, sha256)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        thread_id TEXT NOT NULL,
        at REAL NOT NULL,
        event TEXT NOT NULL,               -- proposed | approved | rejected | executed | ...
        call_id TEXT,
        tool TEXT,
        actor TEXT,
        detail TEXT,                       -- JSON
        exit_code INTEGER,
        duration_s REAL
    );
    CREATE INDEX audit_thread ON audit(thread_id, id);
    """,
    """
    CREATE TABLE migrations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        call_id TEXT,
        database TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        statements INTEGER NOT NULL,
        result TEXT NOT NULL,              -- applied | failed | refused
        detail TEXT,
        duration_s REAL,
        at REAL NOT NULL
    );
    """,
    # The names a human typed to approve SQL that destroys data (JSON list); checked again by the
    # migration tool against the SQL about to run. (Approval statuses are now pending | approved |
    # rejected | running | done | refused: a call that cannot run is refused without asking.)
    """
    ALTER TABLE approvals ADD COLUMN confirmed TEXT;
    """,
    # Keyed lookups, so the work of one call does not grow with the thread's history: the call an
    # audit event is about (its own call id, or the one named in its detail, e.g. "workspace
    # seen"), the latest event of a kind, and a thread's calls in one status.
    """
    ALTER TABLE audit ADD COLUMN subject TEXT;
    UPDATE audit SET subject = COALESCE(call_id, json_extract(detail, '$.call_id'));
    CREATE INDEX audit_subject ON audit(thread_id, subject, event, id) WHERE subject IS NOT NULL;
    CREATE INDEX audit_event ON audit(thread_id, event, id);
    CREATE INDEX approvals_status ON approvals(thread_id, status, created_at);
    """,
]


def sha256_text(text: str) -> str:
    # Imported here: hashlib loads OpenSSL (~5 ms), which the commands that only read never need.
    import hashlib

    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def rule_digest(arguments: str) -> str:
    """The identity of a call for "approve always": its arguments as canonical JSON, so the same
    command re-sent with different key order or spacing matches, and nothing else does."""
    try:
        canonical = json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        canonical = arguments
    return sha256_text(canonical)


def new_thread_id() -> str:
    # What secrets.token_hex(4) returns, without its ~10 ms of imports (hmac, random, base64).
    return os.urandom(4).hex()


@dataclass
class Thread:
    id: str
    repo: str
    branch: str
    base_commit: str
    state: str
    settings: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass
class Approval:
    thread_id: str
    call_id: str
    tool: str
    arguments: str
    sha256: str
    status: str
    reason: str | None
    decided_by: str | None
    created_at: float
    decided_at: float | None
    confirmed: tuple[str, ...] = ()  # names typed to approve destructive SQL

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Approval:
        data = dict(row)
        data["confirmed"] = tuple(json.loads(data.get("confirmed") or "[]"))
        return cls(**data)


class Store:
    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.path = home / "devagent.db"
        self._lock = threading.RLock()
        self._depth = 0  # transactions open on this connection (held under _lock): nested ones join
        # Called with each audit entry as it is written (in this process): `--json` streams them.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            # In WAL mode NORMAL syncs at checkpoints, not at every commit: a committed write is in
            # the WAL file, which the OS keeps whatever happens to this process.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StateCorrupted(
                f"the state database {self.path} is unreadable ({exc}); move it aside to start afresh"
            ) from None

    @property
    def sessions_path(self) -> Path:
        """The SDK's conversation memory (SQLiteSession) lives beside our tables."""
        return self.home / "sessions.db"

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        # Tools run on worker threads and share this connection: one transaction at a time. A tx
        # inside another (on the same thread: the lock is reentrant) is part of the outer one.
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.db
                finally:
                    self._depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self.db.execute("COMMIT")

    def batch(self) -> Any:
        """Several writes as one transaction (one commit): all of them, or none after a crash."""
        return self.tx()

    def _migrate(self) -> None:
        with self.tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateCorrupted(
                    f"{self.path} was written by a newer devagent (schema {version}); upgrade devagent"
                )
            for target in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- threads

    def create_thread(self, thread_id: str, repo: str, branch: str, base_commit: str,
                      settings: dict[str, Any]) -> Thread:
        now = time.time()
        with self.tx() as db:
            db.execute(
                "INSERT INTO threads VALUES (?,?,?,?,?,?,?,?)",
                (thread_id, repo, branch, base_commit, "running", json.dumps(settings), now, now),
            )
        return self.thread(thread_id)

    def thread(self, thread_id: str) -> Thread:
        row = self.db.execute("SELECT * FROM threads WHERE id=?", (thread_id,)).fetchone()
        if row is None:
            raise ThreadNotFound(f"no thread {thread_id!r} (see `devagent threads`)")
        return Thread(**{**dict(row), "settings": json.loads(row["settings"])})

    def find_thread(self, given: str) -> Thread:
        """The thread whose id is `given` or, failing that, starts with it (unique prefixes work)."""
        row = self.db.execute("SELECT id FROM threads WHERE id=?", (given,)).fetchone()
        if row is not None:
            return self.thread(row["id"])
        escaped = given.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        ids = [r["id"] for r in self.db.execute(
            "SELECT id FROM threads WHERE id LIKE ? ESCAPE '\\' ORDER BY updated_at DESC", (escaped + "%",))]
        if len(ids) > 1:
            raise ThreadNotFound(f"{given!r} matches {len(ids)} threads ({', '.join(ids[:5])}); give more of the id")
        if not ids:
            raise ThreadNotFound(f"no thread {given!r} (see `devagent threads`)")
        return self.thread(ids[0])

    def last_tasks(self) -> dict[str, str]:
        """Each thread's latest task text (one query, for `threads`)."""
        rows = self.db.execute("SELECT thread_id, detail FROM audit WHERE id IN "
                               "(SELECT MAX(id) FROM audit WHERE event='task' GROUP BY thread_id)")
        return {r["thread_id"]: (json.loads(r["detail"] or "{}").get("task") or "") for r in rows}

    def usage_records(self) -> dict[str, list[dict[str, Any]]]:
        """Each thread's `usage` entries (one per model request, with its model's name), oldest first."""
        records: dict[str, list[dict[str, Any]]] = {}
        for r in self.db.execute("SELECT thread_id, detail FROM audit WHERE event='usage' ORDER BY id"):
            records.setdefault(r["thread_id"], []).append(json.loads(r["detail"] or "{}"))
        return records

    def threads(self) -> list[Thread]:
        rows = self.db.execute("SELECT id FROM threads ORDER BY updated_at DESC").fetchall()
        return [self.thread(r["id"]) for r in rows]

    def set_thread_state(self, thread_id: str, state: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE threads SET state=?, updated_at=? WHERE id=?", (state, time.time(), thread_id))

    def update_settings(self, thread_id: str, settings: dict[str, Any]) -> None:
        with self.tx() as db:
            db.execute("UPDATE threads SET settings=?, updated_at=? WHERE id=?",
                       (json.dumps(settings), time.time(), thread_id))

    def delete_thread(self, thread_id: str) -> None:
        with self.tx() as db:
            for table in ("approvals", "rules", "runs", "migrations", "audit"):
                db.execute(f"DELETE FROM {table} WHERE thread_id=?", (thread_id,))
            db.execute("DELETE FROM threads WHERE id=?", (thread_id,))

    # -- paused runs

    def save_run(self, thread_id: str, task: str, state_blob: str | None) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO runs VALUES (?,?,?,?) ON CONFLICT(thread_id) DO UPDATE SET "
                "task=excluded.task, state_blob=excluded.state_blob, saved_at=excluded.saved_at",
                (thread_id, task, state_blob, time.time()),
            )
            db.execute("UPDATE threads SET updated_at=? WHERE id=?", (time.time(), thread_id))

    def run(self, thread_id: str) -> tuple[str, str | None] | None:
        row = self.db.execute("SELECT task, state_blob FROM runs WHERE thread_id=?", (thread_id,)).fetchone()
        return (row["task"], row["state_blob"]) if row else None

    def clear_run(self, thread_id: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM runs WHERE thread_id=?", (thread_id,))

    # -- approvals

    def add_pending(self, thread_id: str, call_id: str, tool: str, arguments: str) -> Approval:
        digest = sha256_text(arguments)
        with self.tx() as db:
            existing = db.execute(
                "SELECT sha256 FROM approvals WHERE thread_id=? AND call_id=?", (thread_id, call_id)
            ).fetchone()
            if existing is None:
                db.execute(
                    "INSERT INTO approvals (thread_id, call_id, tool, arguments, sha256, status, created_at)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (thread_id, call_id, tool, arguments, digest, "pending", time.time()),
                )
                self._audit(db, thread_id, "proposed", call_id, tool, "agent", {"arguments": arguments, "sha256": digest})
        return self.approval(thread_id, call_id)  # type: ignore[return-value]

    def add_refused(self, thread_id: str, call_id: str, tool: str, arguments: str, reason: str) -> Approval:
        """Record a proposed call that cannot run (e.g. arguments that are not JSON): it is never
        pending, no human is asked, and the model is told `reason`."""
        digest = sha256_text(arguments)
        with self.tx() as db:
            existing = db.execute(
                "SELECT 1 FROM approvals WHERE thread_id=? AND call_id=?", (thread_id, call_id)
            ).fetchone()
            if existing is None:
                now = time.time()
                db.execute(
                    "INSERT INTO approvals (thread_id, call_id, tool, arguments, sha256, status, reason, decided_by,"
                    " created_at, decided_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (thread_id, call_id, tool, arguments, digest, "refused", reason, "devagent", now, now),
                )
                self._audit(db, thread_id, "refused", call_id, tool, "devagent",
                            {"arguments": arguments, "sha256": digest, "reason": reason})
        return self.approval(thread_id, call_id)  # type: ignore[return-value]

    def approval(self, thread_id: str, call_id: str) -> Approval | None:
        row = self.db.execute(
            "SELECT * FROM approvals WHERE thread_id=? AND call_id=?", (thread_id, call_id)
        ).fetchone()
        return Approval.from_row(row) if row else None

    def approvals(self, thread_id: str | None = None, status: str | None = None) -> list[Approval]:
        sql, args = "SELECT * FROM approvals WHERE 1=1", []
        if thread_id:
            sql, args = sql + " AND thread_id=?", [*args, thread_id]
        if status:
            sql, args = sql + " AND status=?", [*args, status]
        return [Approval.from_row(r) for r in self.db.execute(sql + " ORDER BY created_at, call_id", args)]

    def decide(self, thread_id: str, call_id: str, status: str, *, actor: str,
               reason: str | None = None, always: bool = False, confirmed: tuple[str, ...] = (),
               detail: dict[str, Any] | None = None) -> Approval:
        """Record a decision on a pending call (approved / rejected); `detail` adds to its audit entry
        (e.g. the rule, and its file's sha256, that decided it).

        `confirmed`: the names the human typed to approve SQL that destroys data. Such an approval
        is never remembered as an "always" rule: it is confirmed every time."""
        with self.tx() as db:
            row = db.execute(
                "SELECT * FROM approvals WHERE thread_id=? AND call_id=?", (thread_id, call_id)
            ).fetchone()
            if row is None:
                raise ThreadNotFound(f"thread {thread_id} has no call {call_id!r} (see `devagent pending {thread_id}`)")
            if row["status"] not in ("pending", "approved", "rejected"):
                raise StateCorrupted(f"call {call_id} was already {row['status']}")
            confirmed = tuple(confirmed) if status == "approved" else ()
            db.execute(
                "UPDATE approvals SET status=?, reason=?, decided_by=?, decided_at=?, confirmed=?"
                " WHERE thread_id=? AND call_id=?",
                (status, reason, actor, time.time(), json.dumps(list(confirmed)) if confirmed else None,
                 thread_id, call_id),
            )
            always = always and not confirmed
            if always and status == "approved":
                db.execute(
                    "INSERT OR IGNORE INTO rules VALUES (?,?,?,?,?)",
                    (thread_id, row["tool"], rule_digest(row["arguments"]), row["arguments"], time.time()),
                )
            record: dict[str, Any] = {"sha256": row["sha256"], "reason": reason, "always": always, **(detail or {})}
            if confirmed:
                record["confirmed"] = list(confirmed)
            self._audit(db, thread_id, status, call_id, row["tool"], actor, record)
        return self.approval(thread_id, call_id)  # type: ignore[return-value]

    def mark_status(self, thread_id: str, call_id: str, status: str) -> None:
        """Execution progress of an approved call: running, then done."""
        with self.tx() as db:
            db.execute("UPDATE approvals SET status=? WHERE thread_id=? AND call_id=?", (status, thread_id, call_id))

    def exec_tree(self, thread_id: str) -> str | None:
        return self.thread(thread_id).settings.get("exec_tree")

    def set_exec_tree(self, thread_id: str, tree: str) -> None:
        settings = self.thread(thread_id).settings
        self.update_settings(thread_id, {**settings, "exec_tree": tree})

    def has_rule(self, thread_id: str, tool: str, arguments: str) -> bool:
        """Whether "approve always" covers this exact call (same tool, same arguments)."""
        row = self.db.execute(
            "SELECT 1 FROM rules WHERE thread_id=? AND tool=? AND sha256=?",
            (thread_id, tool, rule_digest(arguments)),
        ).fetchone()
        return row is not None

    # -- audit

    def audit(self, thread_id: str, event: str, *, call_id: str | None = None, tool: str | None = None,
              actor: str | None = None, detail: dict[str, Any] | None = None,
              exit_code: int | None = None, duration_s: float | None = None) -> None:
        with self.tx() as db:
            self._audit(db, thread_id, event, call_id, tool, actor, detail, exit_code, duration_s)

    def _audit(self, db: sqlite3.Connection, thread_id: str, event: str, call_id: str | None, tool: str | None,
               actor: str | None, detail: dict[str, Any] | None, exit_code: int | None = None,
               duration_s: float | None = None) -> None:
        at = time.time()
        db.execute(
            "INSERT INTO audit (thread_id, at, event, call_id, tool, actor, detail, exit_code, duration_s, subject)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (thread_id, at, event, call_id, tool, actor, json.dumps(detail or {}), exit_code, duration_s,
             call_id or (detail or {}).get("call_id")),
        )
        entry = {"thread_id": thread_id, "at": at, "event": event, "call_id": call_id, "tool": tool,
                 "actor": actor, "detail": detail or {}, "exit_code": exit_code, "duration_s": duration_s}
        for listener in self.listeners:
            listener(entry)

    def audit_log(self, thread_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM audit WHERE thread_id=? ORDER BY id", (thread_id,)).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"] or "{}")} for r in rows]

    def call_events(self, thread_id: str, call_id: str, event: str) -> list[dict[str, Any]]:
        """The audit events of one kind about one call (its own, or naming it in their detail), oldest first."""
        rows = self.db.execute("SELECT * FROM audit WHERE thread_id=? AND subject=? AND event=? ORDER BY id",
                               (thread_id, call_id, event)).fetchall()
        return [_event(r) for r in rows]

    def last_event(self, thread_id: str, event: str) -> dict[str, Any] | None:
        """The thread's latest audit event of one kind (one index lookup)."""
        row = self.db.execute("SELECT * FROM audit WHERE thread_id=? AND event=? ORDER BY id DESC LIMIT 1",
                              (thread_id, event)).fetchone()
        return _event(row) if row else None

    def events_since(self, thread_id: str, after_id: int, events: tuple[str, ...]) -> list[dict[str, Any]]:
        """The thread's audit events of the given kinds recorded after event `after_id`, oldest first."""
        marks = ",".join("?" * len(events))
        rows = self.db.execute(f"SELECT * FROM audit WHERE thread_id=? AND event IN ({marks}) AND id>? ORDER BY id",
                               (thread_id, *events, after_id)).fetchall()
        return [_event(r) for r in rows]

    # -- calls whose process died while they ran

    def requeue_interrupted(self, thread_id: str, *, locked: bool = False) -> list[str]:
        """Calls left "running" by a process that died (SIGKILL, a crash, Ctrl-C) are pending again:
        `resume` asks for them again, so `threads`, `pending` and `approve` list them as pending too.
        Done under the thread's lock (`locked`: the caller holds it), so a call whose process is
        alive is never touched. Each gets an "interrupted" entry saying how long it had run."""
        if not self.approvals(thread_id, "running"):
            return []
        lock = None
        if not locked:
            try:
                lock = ThreadLock(self.home, thread_id).__enter__()
            except ThreadBusy:
                return []  # its process is alive: the call is still running
        try:
            moved = []
            for approval in self.approvals(thread_id, "running"):
                after = self._ran_for(thread_id, approval.call_id)
                with self.tx() as db:
                    db.execute("UPDATE approvals SET status='pending' WHERE thread_id=? AND call_id=? AND status='running'",
                               (thread_id, approval.call_id))
                    self._audit(db, thread_id, "interrupted", approval.call_id, approval.tool, "devagent",
                                {"note": "was running when its process stopped; approve again to re-run",
                                 "after_s": after}, None, after)
                moved.append(approval.call_id)
            return moved
        finally:
            if lock is not None:
                lock.__exit__()

    def _ran_for(self, thread_id: str, call_id: str) -> float | None:
        """How long the call ran before its process stopped: what Ctrl-C recorded, else the last
        heartbeat of its process; None when neither tells."""
        started = self.call_events(thread_id, call_id, "executing")
        if not started:
            return None
        since = started[-1]["at"]
        for event in reversed(self.call_events(thread_id, call_id, "interrupted")):
            if event["at"] >= since and event["duration_s"] is not None:
                return round(event["duration_s"], 1)
        try:
            alive = heartbeat_path(self.home, thread_id).stat().st_mtime
        except OSError:
            return None
        return round(alive - since, 1) if alive >= since else None

    def interrupted_after(self, thread_id: str, call_id: str) -> float | None:
        """For a pending call that had started and was interrupted: how long it ran (-1: unknown)."""
        started = self.call_events(thread_id, call_id, "executing")
        if not started:
            return None
        requeued = [e for e in self.call_events(thread_id, call_id, "interrupted")
                    if e["at"] >= started[-1]["at"] and e["actor"] == "devagent"]
        if not requeued:
            return None
        after = requeued[-1]["detail"].get("after_s")
        return after if isinstance(after, (int, float)) else -1

    # -- migrations history

    def record_migration(self, thread_id: str, call_id: str | None, database: str, digest: str,
                         statements: int, result: str, detail: str, duration_s: float) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO migrations (thread_id, call_id, database, sha256, statements, result, detail,"
                " duration_s, at) VALUES (?,?,?,?,?,?,?,?,?)",
                (thread_id, call_id, database, digest, statements, result, detail, duration_s, time.time()),
            )

    def migrations(self, thread_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM migrations WHERE thread_id=? ORDER BY id", (thread_id,))
        return [dict(r) for r in rows]


def _event(row: sqlite3.Row) -> dict[str, Any]:
    return {**dict(row), "detail": json.loads(row["detail"] or "{}")}


class ThreadLock:
    """An exclusive per-thread lock (flock): released by the kernel when its process dies."""

    def __init__(self, home: Path, thread_id: str) -> None:
        self.path = home / "locks" / f"{thread_id}.lock"
        self.thread_id = thread_id
        self.fd: int | None = None

    def __enter__(self) -> ThreadLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ThreadBusy(
                f"thread {self.thread_id} is busy: pid {holder} is working on it; wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def held(self) -> bool:
        """Whether a live process holds this thread right now (without taking it)."""
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)


def heartbeat_path(home: Path, thread_id: str) -> Path:
    """Touched every second while a command of the thread runs: after a SIGKILL its time says
    when the process was last alive (the lock alone cannot tell)."""
    return home / "locks" / f"{thread_id}.alive"


class Heartbeat:
    """Touches the thread's heartbeat file on each call (at the start, then about every second
    while a command runs, then at its end: the sandbox's exec watchdog calls it, so a command
    costs no thread of its own for it). A failure to touch is ignored: a heartbeat is a hint,
    never a reason for the command to fail."""

    def __init__(self, home: Path, thread_id: str) -> None:
        self.path = heartbeat_path(home, thread_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self) -> None:
        try:
            os.utime(self.path)
        except FileNotFoundError:
            try:
                self.path.touch()
            except OSError:
                pass
        except OSError:
            pass


@contextmanager
def heartbeat(home: Path, thread_id: str, every_s: float = 1.0) -> Iterator[None]:
    """The heartbeat on a thread of its own, for work that has no watchdog to tick it."""
    beat = Heartbeat(home, thread_id)
    stop = threading.Event()

    def beat_until_stopped() -> None:
        while True:
            beat()
            if stop.wait(every_s):
                return

    ticker = threading.Thread(target=beat_until_stopped, name="devagent-heartbeat", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        beat()
