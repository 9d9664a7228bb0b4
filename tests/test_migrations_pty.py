"""The SQL shown on the approval screen, in a real pseudo-terminal, is the SQL the database ran.

`devagent task "add an index on users.email" --database postgres` against the OpenAI-compatible
stub: the model proposes a migration, the human approves it on the terminal (one key: the index is
on a table the same migration creates, so it locks nothing anyone uses), and then the SQL read
back off the screen is compared with what PostgreSQL itself recorded: the history row written
in the same transaction, and the server's statement log.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pexpect

from llm_stub import tool_call

SQL = (
    "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);\n"
    "-- lookups by email; the agent's reason\n"
    "CREATE INDEX users_email_idx ON users (email);\n"
    "INSERT INTO users (email) VALUES ('ada@example.com'), ('grace@example.com');\n"
)
ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][A-Z0-9])")
SQL_LINE = re.compile(r"^│ +(\d+) │ ?(.*?)\s*│$")
STATEMENT_ROW = re.compile(r"^│ #\d+ ")


def screen_sql(screen: str) -> str:
    """The numbered lines of the SQL box, without frame, line numbers and statement rows."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if "exact bytes" in line and line.startswith("╭"))
    out: list[str] = []
    for line in lines[start + 1:]:
        if "╰" in line:
            break
        if STATEMENT_ROW.match(line):
            continue  # a statement's verdict, above its first line
        match = SQL_LINE.match(line)
        assert match, f"unexpected line in the SQL panel: {line!r}"
        assert int(match.group(1)) == len(out) + 1
        out.append(match.group(2))
    return "\n".join(out)


def psql(container: Any, query: str) -> str:
    code, output = container.exec_run(["psql", "-X", "-U", "devagent", "-d", "devagent", "-At", "-c", query],
                                      user="postgres")
    assert code == 0, output
    return output.decode()


def test_the_sql_on_screen_is_the_sql_the_database_ran(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path, llm: Any, cli: Any) -> None:
    llm.script(
        {"tool_calls": [tool_call("run_migration", {"sql": SQL}, "call_index")]},
        {"content": "Added the index users_email_idx on users.email."},
    )
    env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test-secret-key", "TERM": "xterm-256color"}
    env.pop("OPENAI_BASE_URL", None)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "devagent", "task", "add an index on users.email", "--database", "postgres",
         "--base-url", llm.url, "--model", "stub-model"],
        cwd=str(repo), env=env, encoding="utf-8", timeout=180, dimensions=(60, 200),
    )
    log = io.StringIO()
    child.logfile_read = log
    try:
        child.expect(r"stop.*› ")
        child.send("m")  # the full sha256 is one key away
        child.expect(r"stop.*› ")
        child.send("y")  # the index is on a table of this same migration: nothing to type
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    screen = ANSI.sub("", log.getvalue()).replace("\r", "")
    assert child.exitstatus == 0, screen[-3000:]

    # What the human saw.
    shown = screen_sql(screen)
    assert shown == SQL
    digest = hashlib.sha256(SQL.encode()).hexdigest()
    assert digest in screen
    assert "postgres: devagent:****@postgres:5432/devagent" in screen
    assert "to approve: " not in screen and "CONCURRENTLY" not in screen
    thread_id = re.search(r"thread ([0-9a-f]{8}) on branch", screen).group(1)

    # What the database ran: its history row (same transaction) and its own statement log.
    sidecar = docker_client.containers.get(f"devagent-{thread_id}-postgres")
    sidecar.start()
    deadline = time.monotonic() + 60
    while sidecar.exec_run(["pg_isready", "-q", "-h", "127.0.0.1"], user="postgres").exit_code != 0:
        assert time.monotonic() < deadline, "the sidecar did not come back"
        time.sleep(0.3)
    history = psql(sidecar, "SELECT call_id, sha256, statements, encode(convert_to(sql, 'UTF8'), 'hex') "
                            "FROM devagent_migrations ORDER BY id").split()
    assert len(history) == 1
    call_id, recorded_sha, statements, sql_hex = history[0].split("|")
    assert bytes.fromhex(sql_hex).decode() == shown
    assert (call_id, recorded_sha, statements) == ("call_index", digest, "3")
    assert psql(sidecar, "SELECT indexname FROM pg_indexes WHERE tablename = 'users' ORDER BY 1").split() == [
        "users_email_idx", "users_pkey"]
    # log_statement=all: the server logged what it received (continuation lines tab-indented): each
    # statement of the screen as one message of its own (extended protocol, "execute"), in order,
    # and together with the `;` and newlines between them exactly the SQL shown.
    server_log = sidecar.logs().decode()
    statements = [
        "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL)",
        "-- lookups by email; the agent's reason\nCREATE INDEX users_email_idx ON users (email)",
        "INSERT INTO users (email) VALUES ('ada@example.com'), ('grace@example.com')",
    ]
    assert "".join(s + ";\n" for s in statements) == shown
    at = [server_log.find("LOG:  execute <unnamed>: " + s.replace("\n", "\n\t") + "\n") for s in statements]
    assert -1 not in at and at == sorted(at), server_log[-3000:]
    assert "LOG:  statement: CREATE TABLE users" not in server_log and "LOG:  statement: INSERT" not in server_log

    # The model was told; `devagent migrations` lists it.
    assert llm.tool_outputs()["call_index"].startswith("applied: 3 statements in one transaction")
    listed = cli("migrations", thread_id, "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["call_id"], row["sha256"], row["statements"], row["result"]) == ("call_index", digest, 3, "applied")
    assert row["database"] == "postgres://devagent@postgres:5432/devagent (thread server)"


ORDERS = ("CREATE TABLE orders (id integer PRIMARY KEY, status text);\n"
          "INSERT INTO orders (id, status) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
          "WHERE i < 1240) SELECT i, 'open' FROM n;\n")


def test_the_interactive_screen_counts_rows_and_asks_for_the_table_a_bounded_looking_delete_empties(
        sandbox_image: str, home: Path, repo: Path, llm: Any) -> None:
    import sqlite3

    llm.script(
        {"tool_calls": [tool_call("run_migration", {"sql": ORDERS}, "m1")]},
        {"tool_calls": [tool_call("run_migration", {"sql": "DELETE FROM orders WHERE id > 0"}, "m2")]},
        {"content": "emptied orders"},
    )
    env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test-secret-key", "TERM": "xterm-256color"}
    env.pop("OPENAI_BASE_URL", None)
    child = pexpect.spawn(sys.executable, ["-m", "devagent", "task", "empty orders", "--base-url", llm.url,
                                           "--model", "stub-model"],
                          cwd=str(repo), env=env, encoding="utf-8", timeout=180, dimensions=(60, 200))
    log = io.StringIO()
    child.logfile_read = log
    try:
        child.expect(r"stop.*› ")
        child.send("y")  # creating and filling a new table destroys nothing
        child.expect(r"deletes 1,240 of 1,240 rows of orders \(every row\)")
        child.expect(r"stop.*› ")
        child.send("y")
        child.expect("type .*orders.* to approve: ")
        child.send("orders\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    screen = ANSI.sub("", log.getvalue()).replace("\r", "")
    assert child.exitstatus == 0, screen[-3000:]
    assert "#1 DELETE  destroys data: deletes 1,240 of 1,240 rows of orders (every row)" in screen
    assert "no [a] always here" in screen
    thread_id = re.search(r"thread ([0-9a-f]{8}) on branch", screen).group(1)
    assert llm.tool_outputs()["m2"].startswith("applied: 1 statement ")
    with sqlite3.connect(home / "threads" / thread_id / "workspace" / "devagent.db") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
