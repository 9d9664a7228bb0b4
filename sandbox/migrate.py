"""Apply one approved SQL migration, inside the thread's sandbox container.

Started by devagent as `/usr/bin/python3 -I -S /usr/local/lib/devagent/migrate.py`: an absolute
interpreter and a root-owned script, so nothing the sandbox user installed (a `python3` earlier
on PATH, user site-packages, .pth files, PYTHON* variables) takes part. Standard input carries
one JSON header line, then the SQL: exactly the bytes the human approved. The header also holds
the statement spans the approval screen showed: [start, end) byte offsets of each statement's
text. The script checks the SHA-256 of the bytes, that everything outside the spans is only
whitespace, comments and `;`, and then runs each span as exactly one statement:

* PostgreSQL: through libpq's extended query protocol (PQsendQueryParams), which refuses a
  message holding more than one statement, so the server cannot split the text differently
  from the screen. The settings that decide how the server reads SQL text are pinned for the
  session at connection start (they override role and database defaults), checked before the
  first statement, and watched after each one: a statement that changes them ends the run.
* SQLite: through Python's sqlite3 module, whose execute() refuses more than one statement.

All statements run in a single transaction (rolled back whole on the first error), which also
records the migration in the target database's `devagent_migrations` table. One result line is
printed: `DEVAGENT-MIGRATION-RESULT {json}`. Nothing here interprets the SQL: no psql
meta-commands, no sqlite3 dot-commands, no variables. Standard library only: the image has
python3 and libpq5 (from postgresql-client).
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
    if b"\0" in data:
        # libpq and SQLite would both stop reading at a NUL byte: the tail would silently not run.
        return report({"result": "failed", "statements": 0, "error": "the SQL contains a NUL byte; nothing ran"})
    try:
        sql = data.decode("utf-8")
    except UnicodeDecodeError:
        return report({"result": "failed", "statements": 0, "error": "the SQL is not UTF-8 text; nothing ran"})
    engine = header.get("engine")
    try:
        spans = statement_spans(header.get("spans"), data, nested_comments=engine == "postgres")
    except ValueError as exc:
        return report({"result": "failed", "statements": 0,
                       "error": f"the statements to run do not match the approved SQL ({exc}); nothing ran"})
    try:
        if engine == "sqlite":
            outcome = run_sqlite(header, data, spans, sql)
        elif engine == "postgres":
            outcome = run_postgres(header, data, spans, sql)
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


# --------------------------------------------------------------------------- the statements shown


def statement_spans(spans: object, data: bytes, *, nested_comments: bool) -> list[tuple[int, int]]:
    """The [start, end) byte spans of the statements the approval screen showed, checked.

    They must be in order, not overlap, and leave nothing but whitespace, comments and `;`
    between them: then the spans plus the gaps concatenate to exactly the approved bytes, and
    running each span runs everything that was approved, as it was split on the screen.
    """
    if not isinstance(spans, list) or not spans:
        raise ValueError("no statements")
    checked: list[tuple[int, int]] = []
    previous = 0
    for span in spans:
        if (not isinstance(span, list) or len(span) != 2 or not all(type(v) is int for v in span)
                or not previous <= span[0] < span[1] <= len(data)):
            raise ValueError(f"bad statement span {span!r}")
        if not is_blank(data[previous:span[0]], nested_comments):
            raise ValueError(f"text between statements at byte {previous} is not only comments")
        checked.append((span[0], span[1]))
        previous = span[1]
    if not is_blank(data[previous:], nested_comments):
        raise ValueError(f"text after the last statement at byte {previous} is not only comments")
    return checked


def is_blank(gap: bytes, nested_comments: bool) -> bool:
    """Whitespace, comments and bare ';' only: nothing a database would run."""
    i, n = 0, len(gap)
    while i < n:
        if gap[i:i + 1] in (b" ", b"\t", b"\n", b"\r", b"\f", b"\v", b";"):
            i += 1
        elif gap.startswith(b"--", i):
            nl = gap.find(b"\n", i)
            i = n if nl < 0 else nl + 1
        elif gap.startswith(b"/*", i):
            depth, i = 1, i + 2
            while depth and i < n:  # unterminated: a comment to the end, as the screen's split reads it
                if gap.startswith(b"*/", i):
                    depth, i = depth - 1, i + 2
                elif nested_comments and gap.startswith(b"/*", i):  # PostgreSQL nests them
                    depth, i = depth + 1, i + 2
                else:
                    i += 1
        else:
            return False
    return True


def char_offset(data: bytes, byte_offset: int) -> int:
    """Characters before `byte_offset` (spans start on character boundaries)."""
    return len(data[:byte_offset].decode("utf-8"))


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


def run_sqlite(header: dict, data: bytes, spans: list[tuple[int, int]], sql: str) -> dict:
    conn = sqlite3.connect(header["target"], isolation_level=None, timeout=30)
    started = time.monotonic()
    done = 0
    try:
        # IMMEDIATE: take the write lock now, so the script never half-runs behind a reader.
        conn.execute("BEGIN IMMEDIATE")
        for number, (start, end) in enumerate(spans, 1):
            statement = data[start:end].decode("utf-8")
            try:
                # execute() prepares one statement and refuses text that holds a second one.
                conn.execute(statement)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                return {"result": "failed", "statements": len(spans), "failed_statement": number,
                        "failed_sql": snippet(statement), "error": str(exc), "rolled_back": True}
            if not conn.in_transaction:
                return {"result": "failed", "statements": len(spans), "failed_statement": number,
                        "failed_sql": snippet(statement), "rolled_back": False,
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

# The settings that decide how the server cuts SQL text into tokens and statements, as the
# approval screen reads it: standard strings ('\' is an ordinary character outside E'...'), and
# UTF-8. backslash_quote only decides whether E'\'' is accepted, never where a string ends.
# Sent as startup options, which take precedence over ALTER ROLE / ALTER DATABASE defaults.
PINNED = {"standard_conforming_strings": "on", "client_encoding": "UTF8", "backslash_quote": "safe_encoding"}
PINNED_OPTIONS = " ".join(f"-c {name}={value}" for name, value in PINNED.items())
# Reported by the server whenever they change (ParameterStatus), so checked after every statement.
REPORTED = ("standard_conforming_strings", "client_encoding")
PG_CHECK_SETTINGS = ("SELECT " + ", ".join(f"current_setting('{name}')" for name in PINNED)).encode()

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
        "PQsendQueryParams": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                                             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]),
        "PQgetResult": (ctypes.c_void_p, [ctypes.c_void_p]),
        "PQresultStatus": (ctypes.c_int, [ctypes.c_void_p]),
        "PQresultErrorMessage": (ctypes.c_char_p, [ctypes.c_void_p]),
        "PQresultErrorField": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int]),
        "PQntuples": (ctypes.c_int, [ctypes.c_void_p]),
        "PQnfields": (ctypes.c_int, [ctypes.c_void_p]),
        "PQgetvalue": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]),
        "PQclear": (None, [ctypes.c_void_p]),
        "PQputCopyEnd": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
        "PQgetCopyData": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]),
        "PQfreemem": (None, [ctypes.c_void_p]),
        "PQtransactionStatus": (ctypes.c_int, [ctypes.c_void_p]),
        "PQparameterStatus": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_char_p]),
        "PQsetNoticeProcessor": (ctypes.c_void_p, [ctypes.c_void_p, NoticeProcessor, ctypes.c_void_p]),
    }
    for name, (restype, argtypes) in sig.items():
        fn = getattr(pq, name)
        fn.restype, fn.argtypes = restype, argtypes
    return pq


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "replace").strip()


def connect_params(params: list[list[str]]) -> list[tuple[str, str]]:
    """devagent's libpq keywords with the pinned settings appended to any `options` given.

    `options` and `client_encoding` come last: with expand_dbname the later keyword wins over
    the same one inside a connection URI, so a URI's options are kept (and extended), never
    allowed to undo the pins.
    """
    options = " ".join(v for k, v in params if k == "options")
    rest = [(k, v) for k, v in params if k not in ("options", "client_encoding")]
    return [*rest, ("client_encoding", PINNED["client_encoding"]),
            ("options", f"{options} {PINNED_OPTIONS}".strip())]


class Postgres:
    def __init__(self, params: list[list[str]]) -> None:
        self.pq = libpq()
        pairs = connect_params(params)
        keys = [k.encode() for k, _ in pairs]
        values = [v.encode() for _, v in pairs]
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

    def settings_differ(self) -> str | None:
        """Which pinned setting the session does not have (asked of the server), or None."""
        res = self.pq.PQexecParams(self.conn, PG_CHECK_SETTINGS, 0, None, None, None, None, 0)
        try:
            if self.pq.PQresultStatus(res) != PGRES_TUPLES_OK or self.pq.PQntuples(res) != 1:
                return f"cannot read the session's settings: {_text(self.pq.PQresultErrorMessage(res))}"
            for column, (name, wanted) in enumerate(PINNED.items()):
                got = _text(self.pq.PQgetvalue(res, 0, column))
                if got != wanted:
                    return f"{name} is {got}, not {wanted}"
            return None
        finally:
            self.pq.PQclear(res)

    def reported_change(self) -> str | None:
        """A pinned setting the server reported changed (by the statement that just ran), or None."""
        for name in REPORTED:
            got = _text(self.pq.PQparameterStatus(self.conn, name.encode()))
            if got != PINNED[name]:
                return f"{name} is now {got or 'unknown'}, not {PINNED[name]}"
        return None

    def statement(self, text: bytes) -> dict | None:
        """Run one approved statement; error details, or None.

        PQsendQueryParams speaks the extended query protocol: the server parses the text as one
        prepared statement and rejects it outright if it holds more than one.
        """
        pq = self.pq
        if not pq.PQsendQueryParams(self.conn, text, 0, None, None, None, None, 0):
            return {"error": _text(pq.PQerrorMessage(self.conn))}
        failure = None
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
            elif status == PGRES_FATAL_ERROR and failure is None:
                position = _text(pq.PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION))
                failure = {"error": _text(pq.PQresultErrorMessage(res)),
                           "sqlstate": _text(pq.PQresultErrorField(res, PG_DIAG_SQLSTATE)),
                           "position": int(position) if position.isdigit() else None}
            pq.PQclear(res)
        return failure

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


def run_statements(db: Postgres, data: bytes, spans: list[tuple[int, int]], transactional: bool) -> tuple[int, dict | None]:
    """Each span as one statement, in order; (statements that ran, failure details or None)."""
    for number, (start, end) in enumerate(spans, 1):
        text = data[start:end]
        failure = db.statement(text)
        if failure is None and transactional:
            if db.transaction_status() != PQTRANS_INTRANS:
                failure = {"error": "this statement ended devagent's transaction (COMMIT or ROLLBACK): "
                                    "what ran before it is committed", "rolled_back": False}
            elif (changed := db.reported_change()) is not None:
                failure = {"error": f"this statement changed how the server reads SQL ({changed}); devagent "
                                    "runs every statement as the approval screen read it, so nothing was committed"}
        if failure is not None:
            if isinstance(failure.get("position"), int):
                # From the statement's own text to the whole script, as devagent numbers it.
                failure["position"] += char_offset(data, start)
            failure.update(failed_statement=number, failed_sql=snippet(text.decode("utf-8")))
            return number - 1, failure
    return len(spans), None


def run_postgres(header: dict, data: bytes, spans: list[tuple[int, int]], sql: str) -> dict:
    try:
        db = Postgres(header["connect"])
    except ConnectionError as exc:
        return {"result": "failed", "statements": 0, "error": f"cannot connect: {exc}"}
    # A statement PostgreSQL refuses to run in a transaction block (CREATE INDEX CONCURRENTLY,
    # VACUUM, ...) is sent alone, as its own implicit transaction; the history row follows.
    transactional = not header.get("outside_transaction")
    started = time.monotonic()
    try:
        unpinned = db.settings_differ()
        if unpinned is not None:
            return {"result": "failed", "statements": 0, "rolled_back": True,
                    "error": f"the server did not keep the settings devagent pins for reading SQL ({unpinned}); "
                             "nothing ran"}
        if transactional:
            error = db.command(b"BEGIN")
            if error:
                return {"result": "failed", "statements": 0, "error": error}
        done, failure = run_statements(db, data, spans, transactional)
        if failure is not None:
            if transactional:
                db.command(b"ROLLBACK")
            failure.setdefault("rolled_back", transactional)
            return {"result": "failed", "statements": done, "notices": db.notices, **failure}
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
