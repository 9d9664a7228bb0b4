"""Apply one approved SQL migration, inside the thread's sandbox container.

Started by devagent as `python3 /usr/local/lib/devagent/migrate.py`. Standard input carries one
JSON header line, then the SQL: exactly the bytes the human approved. The script checks their
SHA-256 against the header, runs them in a single transaction (rolled back whole on the first
error), records the migration in the target database's `devagent_migrations` table inside that
same transaction, and prints one result line: `DEVAGENT-MIGRATION-RESULT {json}`.

Nothing here interprets the SQL: no psql meta-commands, no sqlite3 dot-commands, no variables.
SQLite runs through Python's sqlite3 module (the text is cut only where a statement ends, the
same rule as sqlite3_complete); PostgreSQL receives the whole text as one query through libpq.
Standard library only: the image has python3 and libpq5 (from postgresql-client).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import sqlite3
import sys
import time

MARKER = "DEVAGENT-MIGRATION-RESULT "
SNIPPET = 400
MAX_NOTICES = 20


def main() -> int:
    raw = sys.stdin.buffer.read()
    head, sep, data = raw.partition(b"\n")
    try:
        header = json.loads(head)
    except ValueError:
        return report({"result": "failed", "error": "devagent-migrate: malformed header"})
    if not sep or hashlib.sha256(data).hexdigest() != header.get("sha256"):
        return report({"result": "failed", "statements": 0,
                       "error": "the SQL received differs from the approved SQL (sha256 mismatch); nothing ran"})
    try:
        sql = data.decode("utf-8")
    except UnicodeDecodeError:
        return report({"result": "failed", "statements": 0, "error": "the SQL is not UTF-8 text; nothing ran"})
    engine = header.get("engine")
    try:
        if engine == "sqlite":
            outcome = run_sqlite(header, sql)
        elif engine == "postgres":
            outcome = run_postgres(header, data, sql)
        else:
            outcome = {"result": "failed", "error": f"unknown engine {engine!r}"}
    except Exception as exc:  # reported to devagent, never a bare traceback
        outcome = {"result": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return report(outcome)


def report(outcome: dict) -> int:
    sys.stdout.write(MARKER + json.dumps(outcome) + "\n")
    sys.stdout.flush()
    return 0 if outcome.get("result") == "applied" else 1


def snippet(text: str) -> str:
    text = text.strip()
    return text if len(text) <= SNIPPET else text[:SNIPPET] + " …"


# --------------------------------------------------------------------------- SQLite

SQLITE_HISTORY = """CREATE TABLE IF NOT EXISTS devagent_migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL,
    statements INTEGER NOT NULL,
    sql TEXT NOT NULL,
    source TEXT,
    call_id TEXT,
    thread_id TEXT,
    duration_ms REAL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)"""


def split_sqlite(sql: str) -> list[str]:
    """Cut `sql` after each complete statement. The pieces concatenate back to `sql` exactly."""
    pieces: list[str] = []
    start = 0
    pos = sql.find(";")
    while pos != -1:
        if sqlite3.complete_statement(sql[start:pos + 1]):
            pieces.append(sql[start:pos + 1])
            start = pos + 1
        pos = sql.find(";", pos + 1)
    if start < len(sql):
        pieces.append(sql[start:])
    return pieces


def is_blank(piece: str) -> bool:
    """Whitespace, comments and bare ';' only: nothing that sqlite would run."""
    i, n = 0, len(piece)
    while i < n:
        if piece[i] in " \t\n\r\f\v;":
            i += 1
        elif piece.startswith("--", i):
            nl = piece.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif piece.startswith("/*", i):
            end = piece.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            return False
    return True


def run_sqlite(header: dict, sql: str) -> dict:
    conn = sqlite3.connect(header["target"], isolation_level=None, timeout=30)
    started = time.monotonic()
    done = 0
    try:
        # IMMEDIATE: take the write lock now, so the script never half-runs behind a reader.
        conn.execute("BEGIN IMMEDIATE")
        pieces = [p for p in split_sqlite(sql) if not is_blank(p)]
        for number, piece in enumerate(pieces, 1):
            try:
                conn.execute(piece)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                return {"result": "failed", "statements": len(pieces), "failed_statement": number,
                        "failed_sql": snippet(piece), "error": str(exc), "rolled_back": True}
            if not conn.in_transaction:
                return {"result": "failed", "statements": len(pieces), "failed_statement": number,
                        "failed_sql": snippet(piece), "rolled_back": False,
                        "error": "this statement ended devagent's transaction: what ran before it is committed"}
            done += 1
        duration_ms = (time.monotonic() - started) * 1000
        conn.execute(SQLITE_HISTORY)
        cur = conn.execute(
            "INSERT INTO devagent_migrations (sha256, statements, sql, source, call_id, thread_id, duration_ms)"
            " VALUES (?,?,?,?,?,?,?)",
            (header["sha256"], done, sql, header.get("source"), header.get("call_id"),
             header.get("thread_id"), round(duration_ms, 3)),
        )
        history_id = cur.lastrowid
        conn.execute("COMMIT")
        return {"result": "applied", "statements": done, "history_id": history_id,
                "duration_s": round(time.monotonic() - started, 4)}
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return {"result": "failed", "statements": done, "error": str(exc), "rolled_back": True}
    finally:
        conn.close()


# --------------------------------------------------------------------------- PostgreSQL (libpq)

PG_HISTORY = """CREATE TABLE IF NOT EXISTS public.devagent_migrations (
    id bigserial PRIMARY KEY,
    sha256 text NOT NULL,
    statements integer NOT NULL,
    sql text NOT NULL,
    source text,
    call_id text,
    thread_id text,
    duration_ms double precision,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
PG_INSERT = (b"INSERT INTO public.devagent_migrations (sha256, statements, sql, source, call_id, thread_id,"
             b" duration_ms) VALUES ($1, $2::integer, $3, $4, $5, $6, $7::double precision) RETURNING id")

CONNECTION_OK = 0
PGRES_EMPTY_QUERY, PGRES_COMMAND_OK, PGRES_TUPLES_OK = 0, 1, 2
PGRES_COPY_OUT, PGRES_COPY_IN, PGRES_FATAL_ERROR, PGRES_COPY_BOTH = 3, 4, 7, 8
PQTRANS_IDLE, PQTRANS_INTRANS = 0, 2
PG_DIAG_SQLSTATE = ord("C")
PG_DIAG_STATEMENT_POSITION = ord("P")

NoticeProcessor = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)


def libpq() -> ctypes.CDLL:
    pq = ctypes.CDLL("libpq.so.5")
    sig = {
        "PQconnectdbParams": (ctypes.c_void_p, [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]),
        "PQstatus": (ctypes.c_int, [ctypes.c_void_p]),
        "PQerrorMessage": (ctypes.c_char_p, [ctypes.c_void_p]),
        "PQfinish": (None, [ctypes.c_void_p]),
        "PQexec": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
        "PQexecParams": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                                           ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.c_int]),
        "PQsendQuery": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
        "PQgetResult": (ctypes.c_void_p, [ctypes.c_void_p]),
        "PQresultStatus": (ctypes.c_int, [ctypes.c_void_p]),
        "PQresultErrorMessage": (ctypes.c_char_p, [ctypes.c_void_p]),
        "PQresultErrorField": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int]),
        "PQgetvalue": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]),
        "PQclear": (None, [ctypes.c_void_p]),
        "PQputCopyEnd": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
        "PQgetCopyData": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]),
        "PQfreemem": (None, [ctypes.c_void_p]),
        "PQtransactionStatus": (ctypes.c_int, [ctypes.c_void_p]),
        "PQsetNoticeProcessor": (ctypes.c_void_p, [ctypes.c_void_p, NoticeProcessor, ctypes.c_void_p]),
    }
    for name, (restype, argtypes) in sig.items():
        fn = getattr(pq, name)
        fn.restype, fn.argtypes = restype, argtypes
    return pq


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "replace").strip()


class Postgres:
    def __init__(self, params: list[list[str]]) -> None:
        self.pq = libpq()
        keys = [k.encode() for k, _ in params]
        values = [v.encode() for _, v in params]
        karr = (ctypes.c_char_p * (len(keys) + 1))(*keys, None)
        varr = (ctypes.c_char_p * (len(values) + 1))(*values, None)
        # expand_dbname=1: the first `dbname` may be a whole connection URI; later keys override it.
        self.conn = self.pq.PQconnectdbParams(karr, varr, 1)
        self.notices: list[str] = []
        self._processor = NoticeProcessor(self._notice)  # kept alive as long as the connection
        if not self.conn or self.pq.PQstatus(self.conn) != CONNECTION_OK:
            message = _text(self.pq.PQerrorMessage(self.conn)) if self.conn else "out of memory"
            self.close()
            raise ConnectionError(message)
        self.pq.PQsetNoticeProcessor(self.conn, self._processor, None)

    def _notice(self, _arg: int, message: bytes) -> None:
        if len(self.notices) < MAX_NOTICES:
            self.notices.append(_text(message))

    def close(self) -> None:
        if self.conn:
            self.pq.PQfinish(self.conn)
            self.conn = None

    def command(self, sql: bytes) -> str | None:
        """Run a statement of devagent's own; the error text, or None."""
        res = self.pq.PQexec(self.conn, sql)
        try:
            if self.pq.PQresultStatus(res) in (PGRES_COMMAND_OK, PGRES_TUPLES_OK):
                return None
            return _text(self.pq.PQresultErrorMessage(res)) or _text(self.pq.PQerrorMessage(self.conn))
        finally:
            self.pq.PQclear(res)

    def script(self, data: bytes) -> tuple[int, dict | None]:
        """Send the whole script as one query; (statements that ran, error details or None)."""
        pq = self.pq
        if not pq.PQsendQuery(self.conn, data):
            return 0, {"error": _text(pq.PQerrorMessage(self.conn))}
        done, failure = 0, None
        while True:
            res = pq.PQgetResult(self.conn)
            if not res:
                break
            status = pq.PQresultStatus(res)
            if status == PGRES_COPY_IN:
                pq.PQputCopyEnd(self.conn, b"COPY FROM STDIN is not supported in devagent migrations")
            elif status in (PGRES_COPY_OUT, PGRES_COPY_BOTH):
                buf = ctypes.c_void_p()
                while pq.PQgetCopyData(self.conn, ctypes.byref(buf), 0) > 0:
                    pq.PQfreemem(buf)
            elif status == PGRES_FATAL_ERROR:
                if failure is None:
                    position = _text(pq.PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION))
                    failure = {"error": _text(pq.PQresultErrorMessage(res)),
                               "sqlstate": _text(pq.PQresultErrorField(res, PG_DIAG_SQLSTATE)),
                               "failed_statement": done + 1,
                               "position": int(position) if position.isdigit() else None}
            elif status != PGRES_EMPTY_QUERY:
                done += 1
            pq.PQclear(res)
        return done, failure

    def insert_history(self, values: list[str]) -> tuple[str | None, str | None]:
        arr = (ctypes.c_char_p * len(values))(*[v.encode() for v in values])
        res = self.pq.PQexecParams(self.conn, PG_INSERT, len(values), None, arr, None, None, 0)
        try:
            if self.pq.PQresultStatus(res) == PGRES_TUPLES_OK:
                return _text(self.pq.PQgetvalue(res, 0, 0)), None
            return None, _text(self.pq.PQresultErrorMessage(res))
        finally:
            self.pq.PQclear(res)

    def transaction_status(self) -> int:
        return self.pq.PQtransactionStatus(self.conn)


def run_postgres(header: dict, data: bytes, sql: str) -> dict:
    try:
        db = Postgres(header["connect"])
    except ConnectionError as exc:
        return {"result": "failed", "statements": 0, "error": f"cannot connect: {exc}"}
    # A statement PostgreSQL refuses to run in a transaction block (CREATE INDEX CONCURRENTLY,
    # VACUUM, ...) is sent alone, as its own implicit transaction; the history row follows.
    transactional = not header.get("outside_transaction")
    started = time.monotonic()
    try:
        if transactional:
            error = db.command(b"BEGIN")
            if error:
                return {"result": "failed", "statements": 0, "error": error}
        done, failure = db.script(data)
        if failure is None and transactional and db.transaction_status() != PQTRANS_INTRANS:
            failure = {"error": "the script ended devagent's transaction (COMMIT or ROLLBACK inside it): "
                                "what ran before that point is committed", "rolled_back": False}
        if failure is not None:
            if transactional:
                db.command(b"ROLLBACK")
            failure.setdefault("rolled_back", transactional)
            failure.setdefault("statements", done)
            return {"result": "failed", "notices": db.notices, **failure}
        duration_ms = (time.monotonic() - started) * 1000
        notices = list(db.notices)  # the script's own (RAISE NOTICE ...), not devagent's bookkeeping
        error = db.command(PG_HISTORY.encode())
        history_id = None
        if error is None:
            history_id, error = db.insert_history([
                header["sha256"], str(done), sql, header.get("source") or "", header.get("call_id") or "",
                header.get("thread_id") or "", f"{duration_ms:.3f}"])
        if error is None and transactional:
            error = db.command(b"COMMIT")
        if error is not None:
            message = f"recording the migration in devagent_migrations failed: {error}"
            if not transactional:  # the statement itself has already taken effect
                return {"result": "applied", "statements": done, "warning": message, "notices": notices,
                        "outside_transaction": True, "duration_s": round(time.monotonic() - started, 4)}
            db.command(b"ROLLBACK")
            return {"result": "failed", "statements": done, "rolled_back": True, "error": message}
        return {"result": "applied", "statements": done, "history_id": history_id,
                "duration_s": round(time.monotonic() - started, 4), "notices": notices,
                "outside_transaction": not transactional}
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
