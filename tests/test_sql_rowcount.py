"""Row counts before approval, on a real SQLite database opened read-only."""
import sqlite3

import pytest

from devagent.sql_analysis import analyze_sql
from devagent.sql_rowcount import POSTGRES_COUNT_SCRIPT, confirmation_words, count_rows, sqlite_counter


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, customer INTEGER)")
        conn.executemany("INSERT INTO orders (status, customer) VALUES (?, ?)",
                         [("open" if i % 200 else "closed", i % 7) for i in range(1, 1241)])
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, banned INTEGER)")
        conn.executemany("INSERT INTO customers VALUES (?, ?)", [(i, int(i == 3)) for i in range(7)])
    return str(path)


def test_counts_what_each_statement_would_touch(db):
    sql = ("DELETE FROM orders WHERE status = 'open';\n"
           "UPDATE orders SET status = 'x' WHERE customer IN (SELECT id FROM customers WHERE banned = 1);\n"
           "DELETE FROM orders;\n"
           "SELECT 1;\n"
           "REPLACE INTO orders (id, status) VALUES (1, 'y')")
    counts = count_rows(analyze_sql(sql), sqlite_counter(db))
    assert [c.describe() for c in counts] == [
        "deletes 1,234 of 1,240 rows of orders",
        "updates 177 of 1,240 rows of orders",
        "deletes 1,240 of 1,240 rows of orders",
        "may replace rows of orders (1,240 rows in the table)",
    ]
    assert [c.statement for c in counts] == [1, 2, 3, 5]
    # nothing was written: the counter cannot write
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM orders WHERE status = 'open'").fetchone()[0] == 1234


def test_every_row_of_a_non_empty_table_needs_the_typed_word_whatever_the_where(db):
    analysis = analyze_sql("DELETE FROM orders WHERE id > 0; UPDATE customers SET banned = 0 WHERE id = 3")
    assert analysis.confirmation_words == []  # the WHERE looks bounded
    counts = count_rows(analysis, sqlite_counter(db))
    assert counts[0].every_row and not counts[1].every_row
    assert confirmation_words(analysis, counts) == ["orders"]


def test_joined_deletes_count_the_target_rows_once(db):
    analysis = analyze_sql("DELETE FROM orders AS o USING customers AS c WHERE c.id = o.customer AND c.banned = 1",
                           "postgres")
    [count] = count_rows(analysis, sqlite_counter(db))  # the same count query runs on SQLite
    assert count.describe() == "deletes 177 of 1,240 rows of orders"


def test_a_count_that_runs_too_long_says_so(db):
    endless = ("DELETE FROM orders WHERE id IN (WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) "
               "SELECT n FROM r WHERE n < 0)")
    [count] = count_rows(analyze_sql(endless), sqlite_counter(db, timeout_s=0.3))
    assert count.problem == "count timed out" and count.describe().endswith("count timed out")
    assert not count.every_row


@pytest.mark.parametrize("sql", [
    "DELETE FROM orders WHERE randomblob(100000000) IS NOT NULL",
    "UPDATE orders SET status = 'x' WHERE load_extension('evil') = 1",
    "DELETE FROM orders WHERE pg_terminate_backend(42)",
])
def test_conditions_that_call_other_functions_are_not_run_before_approval(db, sql):
    ran = []
    [count] = count_rows(analyze_sql(sql), lambda q: ran.append(q) or 0)
    assert ran == [] and count.problem.startswith("not counted: the condition calls")


def test_the_counter_cannot_write_or_create(db, tmp_path):
    run = sqlite_counter(db)
    with pytest.raises(sqlite3.OperationalError):
        run("DELETE FROM orders")
    with pytest.raises(sqlite3.OperationalError):
        sqlite_counter(str(tmp_path / "missing.db"))("SELECT count(*) FROM sqlite_master")
    assert not (tmp_path / "missing.db").exists()


def test_failures_are_reported_not_raised(db):
    [count] = count_rows(analyze_sql("DELETE FROM no_such_table WHERE id = 1"), sqlite_counter(db))
    assert count.problem.startswith("not counted: no such table")


def test_postgres_script_is_read_only_with_timeouts():
    script = POSTGRES_COUNT_SCRIPT.format(timeout_ms=2000, query="SELECT count(*) FROM t")
    assert script.startswith("BEGIN TRANSACTION READ ONLY;") and script.rstrip().endswith("ROLLBACK;")
    assert "statement_timeout = '2000ms'" in script and "lock_timeout = '2000ms'" in script
    assert len(analyze_sql(script, "postgres").statements) == 5


def test_a_path_with_uri_characters_is_opened_as_a_file(tmp_path):
    path = tmp_path / "odd?name#1.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("INSERT INTO t VALUES (1)")
    [count] = count_rows(analyze_sql("DELETE FROM t"), sqlite_counter(str(path)))
    assert count.describe() == "deletes 1 of 1 rows of t" and count.every_row


# --- PostgreSQL: the read-only script, on a real server ----------------------------------------

@pytest.fixture
def pg_server(docker_client):
    import secrets
    import time

    from devagent.config import POSTGRES_IMAGE

    server = docker_client.containers.run(
        POSTGRES_IMAGE, detach=True, name=f"devagent-test-rowcount-{secrets.token_hex(4)}",
        labels={"org.devagent.test": "rowcount"}, environment={"DEVAGENT_PG_PASSWORD": secrets.token_hex(8)},
        cap_drop=["ALL"], security_opt=["no-new-privileges"])
    try:
        deadline = time.monotonic() + 60
        while server.exec_run(["pg_isready", "-q", "-h", "127.0.0.1"], user="postgres").exit_code != 0:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        yield server
    finally:
        server.remove(force=True)


def psql_counter(server, timeout_ms: int):
    def run(query: str) -> int:
        script = POSTGRES_COUNT_SCRIPT.format(timeout_ms=timeout_ms, query=query)
        code, out = server.exec_run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", "devagent",
                                     "-d", "devagent", "-c", script], user="postgres")
        text = out.decode()
        if "statement timeout" in text or "lock timeout" in text:
            raise TimeoutError("count timed out")
        if code != 0:
            raise RuntimeError(text.strip().splitlines()[-1])
        return int(text.split()[-1])
    return run


def test_postgres_counts_in_a_read_only_transaction_with_a_timeout(pg_server):
    setup = ("CREATE TABLE orders (id serial PRIMARY KEY, status text); "
             "INSERT INTO orders (status) SELECT CASE WHEN i % 200 = 0 THEN 'closed' ELSE 'open' END "
             "FROM generate_series(1, 1240) AS i")
    assert pg_server.exec_run(["psql", "-X", "-U", "devagent", "-d", "devagent", "-c", setup],
                              user="postgres").exit_code == 0
    run = psql_counter(pg_server, timeout_ms=500)
    analysis = analyze_sql("DELETE FROM orders WHERE status = 'open'; UPDATE orders SET status = 'x'", "postgres")
    assert [c.describe() for c in count_rows(analysis, run)] == [
        "deletes 1,234 of 1,240 rows of orders", "updates 1,240 of 1,240 rows of orders"]
    # the script cannot write, and gives up after its timeout
    with pytest.raises(RuntimeError, match="read-only transaction"):
        run("DELETE FROM orders")
    with pytest.raises(TimeoutError):
        run("SELECT count(*) FROM pg_sleep(5)")
    assert run("SELECT count(*) FROM orders") == 1240


# --- through the CLI: counted on the thread's own database, shown by pending and --no-input -------

ORDERS = ("CREATE TABLE orders (id integer PRIMARY KEY, status text);\n"
          "INSERT INTO orders (id, status) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
          "WHERE i < 1240) SELECT i, CASE WHEN i % 200 = 0 THEN 'closed' ELSE 'open' END FROM n;\n")


def orders_left(docker_client, home, engine: str, thread_id: str) -> int:
    from test_confirmation import query

    return int(query(docker_client, home, engine, thread_id, "SELECT count(*) FROM orders")[0])


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_the_screen_counts_rows_and_every_row_needs_the_typed_table_name(engine, cli, llm, home, docker_client):
    import json

    from llm_stub import tool_call

    llm.script(
        {"tool_calls": [tool_call("run_migration", {"sql": ORDERS}, "m1")]},
        {"tool_calls": [tool_call("run_migration", {"sql": "DELETE FROM orders WHERE status = 'open'"}, "m2"),
                        tool_call("run_migration", {"sql": "DELETE FROM orders WHERE id > 0"}, "m3"),
                        tool_call("run_migration", {"sql": "UPDATE orders SET status = 'x' WHERE 1=1"}, "m4")]},
        {"content": "cleaned up"},
    )
    first = cli("task", "clean up orders", "--base-url", llm.url, "--model", "stub", "--no-input", "--json",
                "--database", engine)
    assert first.returncode == 3, first.stderr
    tid = json.loads(first.stdout.splitlines()[-1])["thread"]
    assert cli("approve", tid, "--all").returncode == 0

    # --no-input text output: each statement's row count, on the screen of its call
    paused = cli("resume", tid, "--no-input")
    assert paused.returncode == 3, paused.stdout + paused.stderr
    screen = " ".join(paused.stdout.replace("│", " ").split())  # the panels' lines, joined
    assert "#1 DELETE deletes 1,234 of 1,240 rows of orders" in screen
    assert "#1 DELETE destroys data: deletes 1,240 of 1,240 rows of orders (every row)" in screen
    assert "overwrites status in every row of orders; updates 1,240 of 1,240 rows of orders" in screen
    # pending (text and JSON) shows the same counts: they were recorded when the calls were proposed
    listed = " ".join(cli("pending", tid).stdout.replace("│", " ").split())
    assert "#1 DELETE deletes 1,234 of 1,240 rows of orders" in listed
    assert "#1 DELETE destroys data: deletes 1,240 of 1,240 rows of orders (every row)" in listed
    counts = {p["call_id"]: [c["text"] for c in p["row_counts"]]
              for p in json.loads(cli("pending", tid, "--json").stdout)}
    assert counts == {"m2": ["deletes 1,234 of 1,240 rows of orders"],
                      "m3": ["deletes 1,240 of 1,240 rows of orders"],
                      "m4": ["updates 1,240 of 1,240 rows of orders"]}
    assert orders_left(docker_client, home, engine, tid) == 1240  # counting changed nothing

    # --all approves the bounded DELETE only; the WHERE that matches every row, and the
    # tautology, wait for the typed table name
    approved = cli("approve", tid, "--all")
    assert approved.returncode == 3, approved.stdout + approved.stderr
    assert "approved m2" in approved.stdout
    assert f"devagent approve {tid} m3 --confirm orders" in approved.stdout
    assert f"devagent approve {tid} m4 --confirm orders" in approved.stdout
    assert orders_left(docker_client, home, engine, tid) == 1240
    assert cli("approve", tid, "m3", "--confirm", "order").returncode == 1  # a wrong word changes nothing
    assert cli("approve", tid, "m3", "--confirm", "orders").returncode == 0
    assert cli("approve", tid, "m4", "--confirm", "orders").returncode == 0
    done = cli("resume", tid)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = llm.tool_outputs()
    assert all(outputs[c].startswith("applied: 1 statement ") for c in ("m2", "m3", "m4")), outputs
    assert orders_left(docker_client, home, engine, tid) == 0
