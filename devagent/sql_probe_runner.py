"""Read-only look at the thread's database before a migration is shown: run inside the sandbox.

Not imported by devagent: its text is sent as `/usr/bin/python3 -I -S -c <this file>` to the
thread's container (where the database lives), with a JSON job on standard input:

    {"engine": "sqlite"|"postgres", "target": "/workspace/devagent.db", "connect": [[k, v], ...],
     "timeout_ms": 2000, "queries": ["SELECT count(*) FROM t WHERE ...", ...], "schema": true}

Each query is one `SELECT count(*)`; it runs where it cannot write: SQLite opened read-only
(`mode=ro`, `query_only`), PostgreSQL in a `READ ONLY` transaction that is rolled back, one
statement per message (extended protocol), with statement and lock timeouts, on the session
devagent's migration runner opens (its pinned settings included). `schema`: the columns of every
SQLite table. One line is printed: `DEVAGENT-PROBE-RESULT {"counts": [...], "schema": ...}`,
each count an integer, "timeout" or {"error": text}.
"""

import json
import sys
import time

MARKER = "DEVAGENT-PROBE-RESULT "
MIGRATE_PY = "/usr/local/lib/devagent/migrate.py"
MAX_COLUMNS = 20_000


def sqlite_probe(job):
    import os
    import sqlite3
    import urllib.parse

    path = job["target"]
    if not os.path.exists(path):
        return {"counts": [{"error": "the database file does not exist yet"} for _ in job["queries"]],
                "schema": {} if job.get("schema") else None}
    conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=job["timeout_ms"] / 1000)
    deadline = [0.0]
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline[0]), 10_000)
    conn.execute("PRAGMA query_only = 1")

    def run(sql):
        deadline[0] = time.monotonic() + job["timeout_ms"] / 1000
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc) or time.monotonic() > deadline[0]:
                return "timeout"
            return {"error": str(exc)}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    out = {"counts": [run(q) for q in job["queries"]], "schema": None}
    if job.get("schema"):
        deadline[0] = time.monotonic() + job["timeout_ms"] / 1000
        schema = {}
        try:
            rows = conn.execute("SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
                                "WHERE m.type = 'table' ORDER BY m.name, p.cid LIMIT ?", (MAX_COLUMNS,))
            for table, column in rows:
                schema.setdefault(table, []).append(column)
            out["schema"] = schema
        except Exception as exc:
            out["schema_error"] = str(exc)
    conn.close()
    return out


def postgres_probe(job):
    import importlib.util

    spec = importlib.util.spec_from_file_location("devagent_migrate", MIGRATE_PY)
    pg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pg)
    try:
        db = pg.Postgres(job["connect"])
    except ConnectionError as exc:
        return {"counts": [{"error": f"cannot connect: {exc}"} for _ in job["queries"]], "schema": None}
    timeout = int(job["timeout_ms"])

    def run(sql):
        for setup in (b"BEGIN TRANSACTION READ ONLY", f"SET LOCAL statement_timeout = {timeout}".encode(),
                      f"SET LOCAL lock_timeout = {timeout}".encode()):
            error = db.command(setup)
            if error:
                db.command(b"ROLLBACK")
                return {"error": error}
        res = db.pq.PQexecParams(db.conn, sql.encode(), 0, None, None, None, None, 0)
        try:
            if db.pq.PQresultStatus(res) == pg.PGRES_TUPLES_OK and db.pq.PQntuples(res) == 1:
                return int(pg._text(db.pq.PQgetvalue(res, 0, 0)))
            state = pg._text(db.pq.PQresultErrorField(res, pg.PG_DIAG_SQLSTATE))
            if state in ("57014", "55P03"):  # statement timeout, lock timeout
                return "timeout"
            return {"error": pg._text(db.pq.PQresultErrorMessage(res)) or "no result"}
        finally:
            db.pq.PQclear(res)
            db.command(b"ROLLBACK")

    try:
        unpinned = db.settings_differ()
        if unpinned is not None:
            return {"counts": [{"error": f"the session's settings are not devagent's ({unpinned})"}
                               for _ in job["queries"]], "schema": None}
        return {"counts": [run(q) for q in job["queries"]], "schema": None}
    finally:
        db.close()


def main():
    job = json.loads(sys.stdin.read())
    try:
        out = sqlite_probe(job) if job["engine"] == "sqlite" else postgres_probe(job)
    except Exception as exc:  # reported, never a bare traceback
        out = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(MARKER + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
