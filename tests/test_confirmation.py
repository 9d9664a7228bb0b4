"""SQL that destroys data runs only after a human typed the names of what it destroys, on every
path: `approve --all`, `approve --confirm`, "always" rules, the interactive approver, and the
migration tool itself. And a call that cannot run never waits for a human.

Real CLI processes against the OpenAI-compatible stub, real store, real containers, real SQLite
and PostgreSQL (the thread's sidecar); only the model is scripted.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from agents.testing import ScriptedModel, assistant_message, function_call

from devagent.runner import Decision, TaskOptions, ThreadRunner
from devagent.store import Store, rule_digest

from agent_helpers import ScriptedApprover, tool_outputs
from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")

SCHEMA = ("CREATE TABLE users (id integer PRIMARY KEY, email text, legacy_flag integer);\n"
          "INSERT INTO users (id, email, legacy_flag) VALUES (1, 'a@example.com', 0);\n")
DROP_COLUMN = "ALTER TABLE users DROP COLUMN legacy_flag;"


def start(cli: Any, llm: Any, *extra: str) -> tuple[Any, dict]:
    result = cli("task", "change the schema", "--base-url", llm.url, "--model", "stub", "--no-input", "--json", *extra)
    return result, (json.loads(result.stdout.splitlines()[-1]) if result.stdout.strip() else {})


def pending_ids(cli: Any, thread_id: str) -> list[str]:
    return [p["call_id"] for p in json.loads(cli("pending", thread_id, "--json").stdout)]


def query(docker_client: Any, home: Path, engine: str, thread_id: str, sql: str) -> list[str]:
    """Rows (as `a|b` strings) from the thread's database, read outside devagent."""
    if engine == "sqlite":
        with sqlite3.connect(home / "threads" / thread_id / "workspace" / "devagent.db") as conn:
            return ["|".join(str(v) for v in row) for row in conn.execute(sql)]
    sidecar = docker_client.containers.get(f"devagent-{thread_id}-postgres")
    sidecar.start()
    try:
        deadline = time.monotonic() + 60
        while sidecar.exec_run(["pg_isready", "-q", "-h", "127.0.0.1"], user="postgres").exit_code != 0:
            assert time.monotonic() < deadline, "the sidecar did not come back"
            time.sleep(0.3)
        code, out = sidecar.exec_run(["psql", "-X", "-U", "devagent", "-d", "devagent", "-At", "-c", sql],
                                     user="postgres")
        assert code == 0, out
        return out.decode().split()
    finally:
        sidecar.stop()


def user_columns(docker_client: Any, home: Path, engine: str, thread_id: str) -> list[str]:
    if engine == "sqlite":
        return [row.split("|")[1] for row in query(docker_client, home, engine, thread_id, "PRAGMA table_info(users)")]
    return query(docker_client, home, engine, thread_id,
                 "SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position")


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_approve_all_leaves_destructive_sql_pending_and_only_the_typed_name_applies_it(
        engine: str, cli: Any, llm: Any, home: Path, docker_client: Any) -> None:
    llm.script(
        {"tool_calls": [tool_call("run_migration", {"sql": SCHEMA}, "m1")]},
        {"tool_calls": [tool_call("run_migration", {"sql": DROP_COLUMN}, "m2"),
                        tool_call("run_shell", {"command": "echo harmless > harmless.txt"}, "s1")]},
        {"content": "dropped the column"},
    )
    paused, data = start(cli, llm, "--database", engine)
    assert paused.returncode == 3, paused.stderr
    tid = data["thread"]
    assert cli("approve", tid, "--all").returncode == 0  # creating a table destroys nothing
    again = cli("resume", tid, "--json")
    assert again.returncode == 3, again.stderr
    assert sorted(p["call_id"] for p in json.loads(again.stdout.splitlines()[-1])["pending"]) == ["m2", "s1"]

    # --all approves what it may; the DROP COLUMN stays pending, named with the word to type.
    approved = cli("approve", tid, "--all")
    assert approved.returncode == 3, approved.stdout + approved.stderr
    assert "approved s1" in approved.stdout
    assert f"devagent approve {tid} m2 --confirm users.legacy_flag" in approved.stdout
    assert pending_ids(cli, tid) == ["m2"]
    assert user_columns(docker_client, home, engine, tid) == ["id", "email", "legacy_flag"]

    # A wrong word changes nothing: one clear line naming the expected word, exit 1.
    wrong = cli("approve", tid, "m2", "--confirm", "users.legacy")
    assert wrong.returncode == 1
    assert wrong.stderr.count("\n") == 1 and "nothing was approved" in wrong.stderr
    assert "--confirm users.legacy_flag" in wrong.stderr
    assert pending_ids(cli, tid) == ["m2"]
    # --always is no way around it either.
    assert cli("approve", tid, "m2", "--always").returncode == 3
    assert pending_ids(cli, tid) == ["m2"]

    # Resuming now runs the approved shell command and pauses again on the DROP COLUMN.
    waiting = cli("resume", tid, "--json")
    assert waiting.returncode == 3, waiting.stderr
    assert [p["call_id"] for p in json.loads(waiting.stdout.splitlines()[-1])["pending"]] == ["m2"]
    assert (home / "threads" / tid / "workspace" / "harmless.txt").exists()
    assert user_columns(docker_client, home, engine, tid) == ["id", "email", "legacy_flag"]

    # The typed name approves it, and it runs.
    right = cli("approve", tid, "m2", "--confirm", "users.legacy_flag")
    assert right.returncode == 0, right.stdout + right.stderr
    done = cli("resume", tid)
    assert done.returncode == 0, done.stdout + done.stderr
    assert llm.tool_outputs()["m2"].startswith("applied: 1 statement "), llm.tool_outputs()["m2"]
    assert user_columns(docker_client, home, engine, tid) == ["id", "email"]
    log = json.loads(cli("log", tid, "--json").stdout)
    [decision] = [e for e in log if e["event"] == "approved" and e["call_id"] == "m2"]
    assert decision["detail"]["confirmed"] == ["users.legacy_flag"] and decision["actor"] == "user"


def test_an_always_rule_never_applies_destructive_sql(cli: Any, llm: Any, home: Path, docker_client: Any) -> None:
    harmless = "CREATE TABLE users (id integer);\nCREATE TABLE sessions (id integer);\nINSERT INTO users VALUES (1);\n"
    destroy = "TRUNCATE users; DROP TABLE IF EXISTS sessions;"
    llm.script(
        # Turn 1: the file holds harmless SQL; the human approves it "always".
        {"tool_calls": [tool_call("write_file", {"path": "m.sql", "content": harmless}, "w1"),
                        tool_call("run_migration", {"path": "m.sql"}, "m1")]},
        {"content": "created"},
        # Turn 2: the same call, but the file now destroys data.
        {"tool_calls": [tool_call("write_file", {"path": "m.sql", "content": destroy}, "w2"),
                        tool_call("run_migration", {"path": "m.sql"}, "m2")]},
        {"content": "cleaned up"},
    )
    paused, data = start(cli, llm, "--database", "postgres")
    assert paused.returncode == 3, paused.stderr
    tid = data["thread"]
    assert cli("approve", tid, "m1", "--always").returncode == 0
    assert cli("resume", tid).returncode == 0

    second = cli("task", "clean up", "--thread", tid, "--no-input", "--json")
    assert second.returncode == 3, second.stdout + second.stderr  # asked, not applied by the rule
    assert [p["call_id"] for p in json.loads(second.stdout.splitlines()[-1])["pending"]] == ["m2"]
    assert "not covered by your 'always' rule" in second.stderr
    assert query(docker_client, home, "postgres", tid, "SELECT count(*) FROM users") == ["1"]

    # Confirmed with --always: it runs once, and no rule is remembered for it.
    words = ["--confirm", "users", "--confirm", "sessions"] if _several_words() else ["--confirm", "users"]
    approved = cli("approve", tid, "m2", "--always", *words)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "never approved 'always'" in approved.stdout
    assert cli("resume", tid).returncode == 0
    assert query(docker_client, home, "postgres", tid, "SELECT count(*) FROM users") == ["0"]
    assert query(docker_client, home, "postgres", tid, "SELECT to_regclass('sessions') IS NULL") == ["t"]
    store = Store(home)
    rules = store.db.execute("SELECT arguments FROM rules WHERE thread_id=?", (tid,)).fetchall()
    assert [r["arguments"] for r in rules] == ['{"path": "m.sql"}']  # only the one made in turn 1
    assert store.approval(tid, "m2").decided_by == "user"


def _several_words() -> bool:
    """Whether the analysis asks for one name per destroyed object (else: the first one)."""
    from devagent.execution import confirmation_words

    return len(confirmation_words("TRUNCATE users; DROP TABLE IF EXISTS sessions;", "postgres")) == 2


async def test_the_migration_tool_refuses_destructive_sql_approved_without_the_typed_names(
        home: Path, repo: Path, docker_client: Any) -> None:
    """Whatever recorded the approval (an older devagent, a stale rule, an edited store), the tool
    runs destructive SQL only when the approval carries the names computed from that SQL."""
    drop = "DROP TABLE precious;"
    model = ScriptedModel([
        [function_call("run_migration", {"sql": "CREATE TABLE precious (x integer);"}, call_id="m1")],
        [function_call("run_migration", {"sql": drop}, call_id="m2"),
         function_call("run_migration", {"sql": drop}, call_id="m3"),
         function_call("run_migration", {"sql": drop}, call_id="m4")],
        [assistant_message("done")],
    ])
    runner = ThreadRunner(Store(home), model=model, docker_client=docker_client)
    thread = runner.create_thread(repo, TaskOptions())
    tid = thread.id
    assert (await runner.run_task(tid, "migrate")).status == "paused"
    runner.store.decide(tid, "m1", "approved", actor="user")
    assert (await runner.resume(tid)).status == "paused"
    # A rule recorded for exactly this SQL before (e.g. by an older devagent) does not match it.
    args = runner.store.approval(tid, "m2").arguments
    runner.store.db.execute("INSERT INTO rules VALUES (?,?,?,?,?)",
                            (tid, "run_migration", rule_digest(args), args, 0.0))
    outcome = await runner.resume(tid)
    assert outcome.status == "paused" and [p.call_id for p in outcome.pending] == ["m2", "m3", "m4"]
    # Approvals written straight into the store: none, the wrong name, the right name.
    runner.store.decide(tid, "m2", "approved", actor="user")
    runner.store.decide(tid, "m3", "approved", actor="user", confirmed=("other",))
    runner.store.decide(tid, "m4", "approved", actor="user", confirmed=("precious",))
    assert (await runner.resume(tid)).status == "done"

    outputs = tool_outputs(model)
    for call_id in ("m2", "m3"):
        assert outputs[call_id].startswith("refused: this SQL destroys data (precious)"), outputs[call_id]
        assert "Nothing ran" in outputs[call_id]
    assert outputs["m4"].startswith("applied: 1 statement "), outputs["m4"]
    refused = [e["call_id"] for e in runner.store.audit_log(tid) if e["event"] == "refused"]
    assert sorted(refused) == ["m2", "m3"]  # the calls of one response run in parallel
    assert sorted((r["call_id"], r["result"]) for r in runner.store.migrations(tid)) == [
        ("m1", "applied"), ("m2", "refused"), ("m3", "refused"), ("m4", "applied")]


async def test_the_interactive_approver_must_pass_the_typed_names(home: Path, repo: Path, docker_client: Any) -> None:
    """A screen answer of "approve" or "always" for destructive SQL records nothing until it
    carries the typed names; then it runs once and no rule is made."""
    setup = "CREATE TABLE users (id integer);"
    truncate = "DELETE FROM users;"
    approver = ScriptedApprover(
        Decision(True),
        Decision(True, always=True), Decision(True, always=True), Decision(True, always=True),
        Decision(True, always=True, confirmed=("users",)),
    )
    model = ScriptedModel([
        [function_call("run_migration", {"sql": setup}, call_id="m1")],
        [function_call("run_migration", {"sql": truncate}, call_id="m2")],
        [function_call("run_migration", {"sql": truncate}, call_id="m3")],
        [assistant_message("done")],
    ])
    runner = ThreadRunner(Store(home), model=model, approver=approver, docker_client=docker_client)
    thread = runner.create_thread(repo, TaskOptions())
    outcome = await runner.run_task(thread.id, "empty users")
    # Three "always" answers without the name were not approvals: the call is still pending.
    assert outcome.status == "paused" and [p.call_id for p in outcome.pending] == ["m2"]
    assert len(approver.shown) == 4
    assert runner.store.db.execute("SELECT count(*) FROM rules").fetchone()[0] == 0

    outcome = await runner.resume(thread.id)  # now the answer carries the name
    assert tool_outputs(model)["m2"].startswith("applied"), tool_outputs(model)["m2"]
    # The same SQL again is asked again (no rule), and without an answer it waits.
    assert outcome.status == "paused" and [p.call_id for p in outcome.pending] == ["m3"]
    assert runner.store.db.execute("SELECT count(*) FROM rules").fetchone()[0] == 0


def test_a_call_that_cannot_run_goes_back_to_the_model_and_never_waits(cli: Any, llm: Any, home: Path) -> None:
    llm.script(
        {"tool_calls": [
            tool_call("run_shell", '{"command": "touch pwned-1.txt"', "bad-json"),
            tool_call("run_migration", "DROP TABLE users", "bad-sql-json"),
            tool_call("run_shell", {"cmd": "touch pwned-2.txt"}, "no-command"),
            tool_call("shell", {"command": "touch pwned-3.txt"}, "unknown"),
        ]},
        {"content": "gave up"},
    )
    result, data = start(cli, llm)
    assert result.returncode == 0, result.stdout + result.stderr
    assert data["status"] == "done" and data["pending"] == []
    tid = data["thread"]
    assert pending_ids(cli, tid) == []
    assert json.loads(cli("threads", "--json").stdout)[0]["pending"] == 0

    outputs = llm.tool_outputs()
    assert "not valid JSON" in outputs["bad-json"] and "Nothing ran" in outputs["bad-json"]
    assert "not valid JSON" in outputs["bad-sql-json"]
    assert "no `command` string" in outputs["no-command"]
    assert "not found" in outputs["unknown"]
    log = json.loads(cli("log", tid, "--json").stdout)
    refused = {e["call_id"]: e for e in log if e["event"] == "refused"}
    assert set(refused) == {"bad-json", "bad-sql-json", "no-command", "unknown"}
    assert "not valid JSON" in refused["bad-json"]["detail"]["reason"]
    assert "no tool named 'shell'" in refused["unknown"]["detail"]["reason"]
    assert not [e for e in log if e["event"] in ("proposed", "executed", "approved")]
    assert not list((home / "threads" / tid / "workspace").glob("pwned-*"))
