"""run_migration end to end: what the approval shows, exactly those bytes run in the thread's
sandbox (real SQLite in the container, real PostgreSQL in its sidecar), one transaction, history.

The model is scripted (agents.testing.ScriptedModel); everything else is real: the store, the
runner, the checkout, the Docker containers, the databases.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from agents.testing import ScriptedModel, assistant_message, function_call
from rich.console import Console

from devagent.approvals import ApprovalRequest
from devagent.config import THREAD_LABEL
from devagent.migrations import Database, mask_url
from devagent.runner import Decision, TaskOptions, ThreadRunner
from devagent.store import Store
from devagent.execution import confirmation_words
from devagent.ui import approval_panel

from agent_helpers import ScriptedApprover, tool_outputs


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def steps(*items: Any) -> list[list[Any]]:
    """One model response per item (a single output item, or a list of them)."""
    return [item if isinstance(item, list) else [item] for item in items]


def new_runner(home: Path, docker_client: Any, script: list[Any], approver: Any = None) -> tuple[ThreadRunner, ScriptedModel]:
    model = ScriptedModel(steps(*script))
    return ThreadRunner(Store(home), model=model, approver=approver, docker_client=docker_client), model





def render(request: ApprovalRequest) -> str:
    console = Console(record=True, width=220, color_system=None, file=io.StringIO())
    console.print(approval_panel(request, verbose=True))  # verbose: the full sha256 too
    return console.export_text()


def sqlite_db(runner: ThreadRunner, thread_id: str) -> Path:
    return runner.workspace(thread_id).work_dir / "devagent.db"


def tables(db: Path) -> set[str]:
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


# ----------------------------------------------------------------------------- unit: database choice


def test_database_setting_and_password_masking() -> None:
    assert Database.parse(None) == Database("sqlite", "workspace", "devagent.db")
    assert Database.parse("postgres").kind == "sidecar" and not Database.parse("postgres").superuser
    assert Database.parse("postgres+superuser") == Database("postgres", "sidecar", "", superuser=True)
    assert "is a superuser" in Database.parse("postgres+superuser").display(network=False)
    assert Database.parse("sqlite:///data/app.db").location == "data/app.db"
    url = Database.parse("postgresql://app:s3cr3t@db.internal:5432/shop?sslmode=require&password=other")
    assert url.kind == "url"
    shown = url.display(network=True)
    assert "s3cr3t" not in shown and "other" not in shown and "app:****@db.internal:5432/shop" in shown
    assert "--network" in url.display(network=False)
    assert "s3cr3t" not in url.describe(network=True)
    assert mask_url("postgres://u@h/db") == "postgres://u@h/db"
    from devagent.errors import UsageError

    with pytest.raises(UsageError):
        Database.parse("mysql://root:pw@h/db")
    with pytest.raises(UsageError):
        Database.parse("sqlite:///../outside.db")


# ----------------------------------------------------------------------------- SQLite


MIXED = (
    "CREATE TABLE audit_events (id INTEGER PRIMARY KEY, message TEXT NOT NULL);\n"
    "DROP TABLE legacy_users;\n"
    "DELETE FROM sessions;\n"
)


async def test_approval_shows_every_statement_and_flags_destructive_ones(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    approver = ScriptedApprover(then=Decision(False, "not today"))
    runner, model = new_runner(home, docker_client, [
        function_call("run_migration", {"sql": MIXED}, call_id="mixed"),
        assistant_message("ok, not applied"),
    ], approver)
    thread = runner.create_thread(repo, TaskOptions())
    outcome = await runner.run_task(thread.id, "clean up the schema")
    assert outcome.status == "done"

    [request] = approver.shown
    assert request.tool == "run_migration" and request.sql == MIXED
    assert request.sha256 == sha(MIXED)
    screen = render(request)
    assert "sqlite: devagent.db" in screen
    assert sha(MIXED) in screen
    # The SQL whole, then one row per statement; only DROP and DELETE are flagged.
    for line in MIXED.splitlines():
        assert line in screen
    rows = [l for l in screen.splitlines() if l.startswith("│")]  # inside the SQL box
    create = [r for r in rows if "CREATE TABLE" in r and "audit_events" in r]
    drop = [r for r in rows if "DROP TABLE" in r and "legacy_users" in r]
    delete = [r for r in rows if "DELETE" in r and "sessions" in r]
    assert create and drop and delete
    assert not any("destroys data" in r for r in create)
    assert any("destroys data: " in r and "drops table legacy_users" in r for r in drop)
    assert any("destroys data: " in r and "DELETE without WHERE" in r for r in delete)
    assert screen.count("destroys data: ") == 2

    # Rejected: nothing ran, the model was told why.
    assert "not today" in tool_outputs(model)["mixed"]
    assert "audit_events" not in tables(sqlite_db(runner, thread.id))
    assert runner.store.migrations(thread.id) == []


TRICKY = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n"
    "-- a comment; with a semicolon\n"
    "INSERT INTO users (email) VALUES ('A@Example.com'), ('semi;colon@example.com');\n"
    "CREATE TRIGGER users_lower AFTER INSERT ON users BEGIN\n"
    "  UPDATE users SET email = lower(email) WHERE id = new.id;\n"
    "END;\n"
    "INSERT INTO users (email) VALUES ('B@Example.com')"
)


async def test_sqlite_runs_the_exact_sql_in_the_sandbox_and_records_history(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    # The trigger is not analysed, so it counts as destructive: the human types the name asked for.
    approver = ScriptedApprover(then=Decision(True, confirmed=confirmation_words(TRICKY, "sqlite")))
    runner, model = new_runner(home, docker_client, [
        function_call("run_migration", {"sql": TRICKY}, call_id="m1"),
        assistant_message("users table created"),
    ], approver)
    thread = runner.create_thread(repo, TaskOptions())
    outcome = await runner.run_task(thread.id, "create users")
    assert outcome.status == "done"

    assert "SQLite: the file devagent.db at the workspace root" in model.calls[0].system_instructions
    output = tool_outputs(model)["m1"]
    assert output.startswith("applied: 4 statements in one transaction"), output
    assert sha(TRICKY) in output

    db = sqlite_db(runner, thread.id)
    with sqlite3.connect(db) as conn:
        emails = [r[0] for r in conn.execute("SELECT email FROM users ORDER BY id")]
        history = conn.execute("SELECT sha256, statements, sql, source, call_id, thread_id FROM devagent_migrations").fetchall()
    assert emails == ["A@Example.com", "semi;colon@example.com", "b@example.com"]  # the trigger ran for the last one
    assert history == [(sha(TRICKY), 4, TRICKY, "inline", "m1", thread.id)]

    [row] = runner.store.migrations(thread.id)
    assert (row["sha256"], row["statements"], row["result"], row["call_id"]) == (sha(TRICKY), 4, "applied", "m1")
    assert row["database"] == "sqlite:devagent.db"
    events = [(e["event"], e["call_id"]) for e in runner.store.audit_log(thread.id)]
    assert ("executing", "m1") in events and ("executed", "m1") in events
    executed = next(e for e in runner.store.audit_log(thread.id) if e["event"] == "executed")
    assert executed["exit_code"] == 0 and executed["detail"]["sha256"] == sha(TRICKY)
    assert runner.store.approval(thread.id, "m1").status == "done"

    # The database file stays out of the thread's branch.
    files = runner.workspace(thread.id).git("ls-tree", "-r", "--name-only", "HEAD").split()
    assert "devagent.db" not in files


async def test_a_failing_statement_rolls_back_the_whole_migration(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    failing = "CREATE TABLE first_table (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\nCREATE TABLE third_table (y INTEGER);\n"
    runner, model = new_runner(home, docker_client, [
        function_call("run_migration", {"sql": failing}, call_id="bad"),
        assistant_message("it failed"),
    ], ScriptedApprover(then=Decision(True)))
    thread = runner.create_thread(repo, TaskOptions())
    await runner.run_task(thread.id, "migrate")

    output = tool_outputs(model)["bad"]
    assert output.startswith("failed at statement 2 of 3: no such table: no_such_table"), output
    assert "INSERT INTO no_such_table" in output and "rolled back" in output
    assert tables(sqlite_db(runner, thread.id)) == set()  # no first_table, no history table
    [row] = runner.store.migrations(thread.id)
    assert row["result"] == "failed" and row["sha256"] == sha(failing)
    executed = next(e for e in runner.store.audit_log(thread.id) if e["event"] == "executed")
    assert executed["exit_code"] == 1 and "no_such_table" in executed["detail"]["error"]


async def test_a_migration_file_edited_before_the_screen_is_flagged_and_cannot_be_approved(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    runner, model = new_runner(home, docker_client, [
        function_call("write_file", {"path": "m.sql", "content": "CREATE TABLE t (x INTEGER);\n"}, call_id="w1"),
        function_call("run_migration", {"path": "m.sql"}, call_id="m1"),
    ])
    thread = runner.create_thread(repo, TaskOptions())
    assert (await runner.run_task(thread.id, "add t")).status == "paused"
    (runner.workspace(thread.id).work_dir / "m.sql").write_text("DROP TABLE precious;\n")
    [pending] = runner.pending_requests(thread.id)
    assert pending.sql == "DROP TABLE precious;\n"  # the screen shows what is there now...
    assert "changed after the call was proposed" in pending.error  # ...and says it cannot run
    assert "changed after the call was proposed" in render(pending)


async def test_a_migration_file_edited_after_approval_is_refused(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    original = "CREATE TABLE approved_table (x INTEGER);\n"
    edited = "CREATE TABLE approved_table (x INTEGER);\nDROP TABLE IF EXISTS precious;\n"
    runner, model = new_runner(home, docker_client, [
        function_call("write_file", {"path": "migrations/001_init.sql", "content": original}, call_id="w1"),
        function_call("run_migration", {"path": "migrations/001_init.sql"}, call_id="m1"),
        # After the refusal the model proposes the file again: now the current content is shown.
        function_call("run_migration", {"path": "migrations/001_init.sql"}, call_id="m2"),
        assistant_message("done"),
    ])
    thread = runner.create_thread(repo, TaskOptions())
    outcome = await runner.run_task(thread.id, "add the table")
    assert outcome.status == "paused"

    # What the human sees: the file's content as proposed, and its sha256.
    [pending] = runner.pending_requests(thread.id)
    assert pending.sql_path == "migrations/001_init.sql" and pending.sql == original
    assert pending.sha256 == sha(original) and sha(original) in render(pending)
    runner.store.decide(thread.id, "m1", "approved", actor="user")  # `devagent approve`

    # The file changes after the approval, before the call runs.
    (runner.workspace(thread.id).work_dir / "migrations" / "001_init.sql").write_text(edited)
    runner.approver = approver = ScriptedApprover(then=Decision(True, confirmed=confirmation_words(edited, "sqlite")))
    outcome = await runner.resume(thread.id)
    assert outcome.status == "done"

    refused = tool_outputs(model)["m1"]
    assert refused.startswith("refused: migrations/001_init.sql changed after it was shown for approval"), refused
    assert "Nothing ran" in refused
    log = runner.store.audit_log(thread.id)
    assert any(e["event"] == "refused" and e["call_id"] == "m1" for e in log)
    bound = next(e for e in log if e["event"] == "sql file bound" and e["call_id"] == "m1")
    assert bound["detail"]["sha256"] == sha(original)

    # The workspace changed after the approval, so m1 was asked again first, flagged; then the
    # second proposal showed the edited file (flagged) and ran exactly that.
    again, second = approver.shown
    assert again.call_id == "m1" and "changed after the call was proposed" in again.error
    assert again.workspace_notice and "migrations/001_init.sql" in again.workspace_notice
    assert second.sql == edited and "destroys data: " in render(second)
    assert tool_outputs(model)["m2"].startswith("applied: 2 statements")
    with sqlite3.connect(sqlite_db(runner, thread.id)) as conn:
        history = conn.execute("SELECT call_id, sha256, sql, source FROM devagent_migrations").fetchall()
    assert history == [("m2", sha(edited), edited, "migrations/001_init.sql")]
    assert [(r["call_id"], r["result"]) for r in runner.store.migrations(thread.id)] == [("m1", "refused"), ("m2", "applied")]


async def test_an_always_rule_covers_the_file_content_it_was_given_for(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    first = "CREATE TABLE IF NOT EXISTS kept (x INTEGER);\n"
    second = "CREATE TABLE other (y INTEGER);\n"  # (a rule never covers SQL that destroys data at all)
    args = {"path": "m.sql"}
    runner, model = new_runner(home, docker_client, [
        function_call("write_file", {"path": "m.sql", "content": first}, call_id="w1"),
        function_call("run_migration", args, call_id="m1"),
        function_call("write_file", {"path": "m.sql", "content": second}, call_id="w2"),
        # The same call (spacing aside): the rule matches it, but not the file's new content.
        function_call("run_migration", '{ "path":  "m.sql" }', call_id="m2"),
        # Transaction control inside a migration is refused before anything runs.
        function_call("run_migration", {"sql": "BEGIN;\nCREATE TABLE t (x INTEGER);\nCOMMIT;"}, call_id="m3"),
        assistant_message("done"),
    ], ScriptedApprover(then=Decision(True, always=True)))
    thread = runner.create_thread(repo, TaskOptions())
    await runner.run_task(thread.id, "migrate")

    outputs = tool_outputs(model)
    assert outputs["m1"].startswith("applied")
    assert runner.store.approval(thread.id, "m2").decided_by.startswith("rule")
    assert outputs["m2"].startswith("refused: m.sql changed after it was shown for approval (approved by the user's 'approve always' rule")
    assert outputs["m3"].startswith("refused: statement 1 (BEGIN) controls the transaction")
    assert tables(sqlite_db(runner, thread.id)) == {"kept", "devagent_migrations", "sqlite_sequence"}
    assert [r["result"] for r in runner.store.migrations(thread.id)] == ["applied", "refused", "refused"]


# ----------------------------------------------------------------------------- PostgreSQL sidecar


PG_SCHEMA = (
    "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);\n"
    "INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com');\n"
    "CREATE INDEX users_email_idx ON users (email);\n"
)
PG_FAILING = "CREATE TABLE half_done (x int);\nINSERT INTO users (id, email) VALUES (1, 'duplicate');\n"
PG_MORE = "INSERT INTO users (email) VALUES ('c@example.com');"
PG_QUERY = (
    "psql -h postgres -U devagent devagent -At "
    "-c 'SELECT count(*) FROM users' "
    "-c \"SELECT coalesce(to_regclass('half_done')::text, 'absent')\" "
    "-c \"SELECT indexname FROM pg_indexes WHERE tablename = 'users' ORDER BY 1\" "
    "-c 'SELECT call_id, sha256, statements FROM devagent_migrations ORDER BY id'"
)


def labelled(docker_client: Any, thread_id: str) -> dict[str, list[str]]:
    label = {"label": f"{THREAD_LABEL}={thread_id}"}
    return {
        "containers": sorted(c.name for c in docker_client.containers.list(all=True, filters=label)),
        "networks": sorted(n.name for n in docker_client.networks.list(filters=label)),
        "volumes": sorted(v.name for v in docker_client.volumes.list(filters=label)),
    }


async def test_postgres_sidecar_keeps_data_across_turns_and_is_removed_by_discard(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path, cli: Any) -> None:
    # CREATE INDEX locks writes to users: approving it takes typing "users".
    approver = ScriptedApprover(then=Decision(True, confirmed=confirmation_words(PG_SCHEMA, "postgres")))
    runner, model = new_runner(home, docker_client, [
        function_call("run_migration", {"sql": PG_SCHEMA}, call_id="pg1"),
        function_call("run_migration", {"sql": PG_FAILING}, call_id="pg2"),
        assistant_message("schema created"),
    ], approver)
    thread = runner.create_thread(repo, TaskOptions(database="postgres"))
    tid = thread.id
    assert (await runner.run_task(tid, "create the users table")).status == "done"

    # The approval showed the server with its password masked; the index is on a table the same
    # migration creates, so it blocks nobody and is not flagged.
    settings = runner.store.thread(tid).settings
    password = settings["postgres_password"]
    request = approver.shown[0]
    assert request.database.startswith("postgres: devagent:****@postgres:5432/devagent")
    screen = render(request)
    assert password not in screen and "****" in screen
    assert "CREATE INDEX users_email_idx" in screen and "CONCURRENTLY" not in screen

    instructions = model.calls[0].system_instructions
    assert "psql -h postgres -U devagent devagent" in instructions and password not in instructions
    outputs = tool_outputs(model)
    assert outputs["pg1"].startswith("applied: 3 statements in one transaction to postgres:"), outputs["pg1"]
    assert outputs["pg2"].startswith("failed at statement 2 of 2: "), outputs["pg2"]
    assert "duplicate key value violates unique constraint" in outputs["pg2"] and "rolled back" in outputs["pg2"]
    assert password not in json.dumps(runner.store.audit_log(tid)) + json.dumps(runner.store.migrations(tid))

    # Between turns: everything kept, nothing running; the network is internal.
    resources = labelled(docker_client, tid)
    assert resources == {
        "containers": sorted([f"devagent-{tid}", f"devagent-{tid}-postgres"]),
        "networks": [f"devagent-{tid}-net"],
        "volumes": [f"devagent-{tid}-pgdata"],
    }
    for name in resources["containers"]:
        assert docker_client.containers.get(name).status == "exited"
    network = docker_client.networks.get(f"devagent-{tid}-net")
    assert network.attrs["Internal"] is True
    sandbox = docker_client.containers.get(f"devagent-{tid}")
    assert list(sandbox.attrs["NetworkSettings"]["Networks"]) == [f"devagent-{tid}-net"]
    sidecar = docker_client.containers.get(f"devagent-{tid}-postgres")
    assert sidecar.attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert not sidecar.attrs["HostConfig"]["PortBindings"]

    # Next turn: the data is still there; psql in the sandbox reaches the server by name.
    model.extend(steps(
        function_call("run_migration", {"sql": PG_MORE}, call_id="pg3"),
        function_call("run_shell", {"command": PG_QUERY}, call_id="q1"),
        assistant_message("checked"),
    ))
    assert (await runner.run_task(tid, "add a user and check")).status == "done"
    assert tool_outputs(model)["pg3"].startswith("applied: 1 statement ")
    lines = tool_outputs(model)["q1"].splitlines()
    assert lines[0].startswith("[exit code 0"), lines
    assert lines[1:] == [
        "3",
        "absent",
        "users_email_idx", "users_pkey",
        f"pg1|{sha(PG_SCHEMA)}|3",
        f"pg3|{sha(PG_MORE)}|1",
    ]
    assert [r["result"] for r in runner.store.migrations(tid)] == ["applied", "failed", "applied"]

    # `devagent discard` removes the sidecar, its network and its data with the thread.
    done = cli("discard", tid, "--yes")
    assert done.returncode == 0, done.stderr
    assert labelled(docker_client, tid) == {"containers": [], "networks": [], "volumes": []}


# ----------------------------------------------------------------------------- migration runners in run_shell


@pytest.mark.parametrize("command, name, preview", [
    ("alembic upgrade head", "alembic", "alembic upgrade head --sql"),
    ("cd backend && alembic -c alembic.ini upgrade head && pytest -q", "alembic",
     "cd backend && alembic -c alembic.ini upgrade head --sql"),
    ("alembic downgrade base:-1", "alembic", "alembic downgrade base:-1 --sql"),
    ("cd app && python manage.py migrate shop 0002 --noinput; echo ok", "django",
     "cd app && python manage.py sqlmigrate shop 0002"),
    ("python manage.py migrate", "django", "python manage.py migrate --plan"),
    ("liquibase --changelog-file=db.xml update", "liquibase", "liquibase --changelog-file=db.xml update-sql"),
    ("php artisan migrate --force", "laravel", "php artisan migrate --force --pretend"),
    ("bin/rails db:migrate", "rails", None),
    ("mix ecto.migrate", "ecto", None),
])
def test_migration_runners_are_spotted_with_a_preview(command: str, name: str, preview: str | None) -> None:
    from devagent.approvals import detect_migration_runner

    runner = detect_migration_runner(command)
    assert runner is not None and runner.name == name and runner.preview_command == preview


@pytest.mark.parametrize("command", [
    "alembic upgrade head --sql", "python manage.py migrate --plan", "python manage.py sqlmigrate shop 0002",
    "php artisan migrate --pretend", "liquibase update-sql", "make test",
])
def test_previews_and_other_commands_are_not_migration_runs(command: str) -> None:
    from devagent.approvals import detect_migration_runner

    assert detect_migration_runner(command) is None


class ScriptedConsole(Console):
    """A recording console whose prompts are answered from a list."""

    def __init__(self, answers: list[str]) -> None:
        super().__init__(record=True, width=200, color_system=None, file=io.StringIO())
        self.answers = answers

    def input(self, prompt: Any = "", **_: Any) -> str:  # type: ignore[override]
        self.print(prompt, end="")
        answer = self.answers.pop(0)
        self.print(answer)
        return answer


def shell_request(command: str) -> ApprovalRequest:
    from devagent.approvals import detect_migration_runner

    return ApprovalRequest("t", "c1", "run_shell", "{}", "x", "pending", command=command, timeout_s=300,
                           migration_runner=detect_migration_runner(command))


def test_the_preview_choice_asks_for_the_exact_preview_command_instead() -> None:
    from devagent.ui import TerminalApprover

    console = ScriptedConsole(["p"])
    decision = TerminalApprover(console).decide(shell_request("alembic upgrade head"))
    screen = console.export_text()
    assert "this runs the alembic migration runner" in screen
    assert "[y] approve" in screen and "[p] preview SQL" in screen
    assert decision is not None and not decision.approved
    assert "alembic upgrade head --sql" in (decision.reason or "")


def test_destructive_sql_needs_the_typed_confirmation_word() -> None:
    from devagent.ui import TerminalApprover

    request = ApprovalRequest("t", "c1", "run_migration", "{}", "x", "pending", sql=MIXED,
                              database="sqlite: devagent.db (a file in the thread's workspace)")
    # A single key is not enough; a typo asks again (3 tries), then the keys again: nothing decided.
    console = ScriptedConsole(["y", "y", "legacy_user", "yes", "n", "not now"])
    decision = TerminalApprover(console).decide(request)
    assert decision == Decision(False, "not now")
    assert console.export_text().count("type legacy_users to approve") == 3
    # Every object it destroys is named in turn, and the decision carries exactly those names.
    decision = TerminalApprover(ScriptedConsole(["y", "legacy_users", "sessions"])).decide(request)
    assert decision is not None and decision.approved
    assert decision.confirmed == ("legacy_users", "sessions")


# ----------------------------------------------------------------------------- --database URL


async def test_a_database_url_is_used_as_given_and_needs_network(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    from devagent.config import POSTGRES_IMAGE

    password = secrets.token_hex(8)
    server = docker_client.containers.run(
        POSTGRES_IMAGE, detach=True, name=f"devagent-test-userdb-{secrets.token_hex(4)}",
        labels={"org.devagent.test": "userdb"}, environment={"DEVAGENT_PG_PASSWORD": password},
        cap_drop=["ALL"], security_opt=["no-new-privileges"],
    )
    try:
        deadline = time.monotonic() + 60
        while server.exec_run(["pg_isready", "-q", "-h", "127.0.0.1"], user="postgres").exit_code != 0:
            assert time.monotonic() < deadline, "the user's database did not start"
            time.sleep(0.3)
        server.exec_run(["psql", "-U", "devagent", "-d", "devagent", "-c", "CREATE DATABASE shop"], user="postgres")
        server.reload()
        url = f"postgresql://devagent:{password}@{server.attrs['NetworkSettings']['IPAddress']}:5432/devagent"

        # Without --network the thread cannot reach it: refused, and the screen says why.
        approver = ScriptedApprover(then=Decision(True))
        runner, model = new_runner(home, docker_client, [
            function_call("run_migration", {"sql": "CREATE TABLE t (x int);"}, call_id="u0"),
            assistant_message("no network"),
        ], approver)
        offline = runner.create_thread(repo, TaskOptions(database=url))
        await runner.run_task(offline.id, "migrate")
        assert "start the thread with --network" in approver.shown[0].database
        assert password not in render(approver.shown[0])
        assert tool_outputs(model)["u0"].startswith("refused: this thread has no network")

        # With --network: applied on that server (the `database` argument picks another database of it).
        runner, model = new_runner(home, docker_client, [
            function_call("run_migration", {"sql": "CREATE TABLE orders (id int PRIMARY KEY);"}, call_id="u1"),
            function_call("run_migration", {"sql": "CREATE TABLE carts (id int);", "database": "shop"}, call_id="u2"),
            function_call("run_migration", {"sql": "SELECT 1;", "database": "postgresql://evil@elsewhere/db"},
                          call_id="u3"),
            assistant_message("done"),
        ], ScriptedApprover(then=Decision(True)))
        online = runner.create_thread(repo, TaskOptions(database=url, network=True))
        await runner.run_task(online.id, "migrate")
        outputs = tool_outputs(model)
        assert outputs["u1"].startswith("applied: 1 statement "), outputs["u1"]
        assert outputs["u2"].startswith("applied: 1 statement "), outputs["u2"]
        assert outputs["u3"].startswith("refused: `database` names a database of this thread's server, not a URL")
        assert password not in json.dumps(outputs) + json.dumps(runner.store.migrations(online.id))

        def rows(db: str, query: str) -> str:
            code, out = server.exec_run(["psql", "-U", "devagent", "-d", db, "-At", "-c", query], user="postgres")
            assert code == 0, out
            return out.decode().strip()

        assert rows("devagent", "SELECT call_id FROM devagent_migrations") == "u1"
        assert rows("shop", "SELECT call_id FROM devagent_migrations") == "u2"
        assert rows("shop", "SELECT to_regclass('carts') IS NOT NULL") == "t"
    finally:
        server.remove(force=True, v=True)
