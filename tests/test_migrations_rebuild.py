"""The SQLite table rebuild (create new, copy, drop old, rename new) judged against the columns
the thread's database really has, read when the migration is proposed: a rebuild that copies
every column applies without a typed name; one that leaves a column out names that column.

Real CLI, real container, real SQLite file; only the model is scripted.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")

USERS = ("CREATE TABLE users (id integer PRIMARY KEY, email text, phone text);\n"
         "INSERT INTO users VALUES (1, 'a@example.com', '555-1'), (2, 'b@example.com', '555-2');\n")


def rebuild(columns: str) -> str:
    return ("CREATE TABLE new_users (id integer PRIMARY KEY, email text NOT NULL, phone text);\n"
            f"INSERT INTO new_users ({columns}) SELECT {columns} FROM users;\n"
            "DROP TABLE users;\n"
            "ALTER TABLE new_users RENAME TO users;\n")


def rows(home: Path, tid: str) -> list[tuple]:
    with sqlite3.connect(home / "threads" / tid / "workspace" / "devagent.db") as conn:
        return conn.execute("SELECT * FROM users ORDER BY id").fetchall()


def start(cli: Any, llm: Any, *calls: dict) -> str:
    llm.script({"tool_calls": [tool_call("run_migration", {"sql": USERS}, "m1")]}, *calls, {"content": "done"})
    first = cli("task", "rebuild users", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert first.returncode == 3, first.stderr
    tid = json.loads(first.stdout.splitlines()[-1])["thread"]
    assert cli("approve", tid, "--all").returncode == 0
    return tid


def test_a_rebuild_that_copies_every_column_of_the_database_applies_without_a_typed_name(cli: Any, llm: Any,
                                                                                        home: Path) -> None:
    # a migration file this time: its columns are read when the call is proposed, as for inline SQL
    tid = start(cli, llm,
                {"tool_calls": [tool_call("write_file", {"path": "rebuild.sql", "content": rebuild("id, email, phone")},
                                          "w1"),
                                tool_call("run_migration", {"path": "rebuild.sql"}, "m2")]})
    paused = cli("resume", tid, "--no-input")
    assert paused.returncode == 3, paused.stdout + paused.stderr
    screen = " ".join(paused.stdout.replace("│", " ").split())
    assert "file rebuild.sql" in screen
    assert "rebuilds table users" in screen and "no rows or columns are lost" in screen
    assert "DESTROYS" not in screen
    approved = cli("approve", tid, "--all")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert cli("resume", tid).returncode == 0
    assert llm.tool_outputs()["m2"].startswith("applied: 4 statements"), llm.tool_outputs()["m2"]
    assert rows(home, tid) == [(1, "a@example.com", "555-1"), (2, "b@example.com", "555-2")]


def test_a_rebuild_that_leaves_a_column_out_names_it_and_waits_for_it(cli: Any, llm: Any, home: Path) -> None:
    tid = start(cli, llm, {"tool_calls": [tool_call("run_migration", {"sql": rebuild("id, email")}, "m2")]})
    paused = cli("resume", tid, "--no-input")
    assert paused.returncode == 3, paused.stdout + paused.stderr
    screen = " ".join(paused.stdout.replace("│", " ").split())
    assert "rebuilds table users without column phone: their data is lost" in screen
    approved = cli("approve", tid, "--all")
    assert approved.returncode == 3
    assert f"devagent approve {tid} m2 --confirm users.phone" in approved.stdout
    assert rows(home, tid)[0] == (1, "a@example.com", "555-1")
    assert cli("approve", tid, "m2", "--confirm", "users.phone").returncode == 0
    assert cli("resume", tid).returncode == 0
    assert rows(home, tid) == [(1, "a@example.com", None), (2, "b@example.com", None)]


def test_a_column_added_after_the_screen_makes_the_rebuild_refused(cli: Any, llm: Any, home: Path) -> None:
    """The screen said "nothing lost" from the columns it read; a column added since would be lost.
    The database file is in the workspace: its change stops the run, and the call is asked again."""
    tid = start(cli, llm, {"tool_calls": [tool_call("run_migration", {"sql": rebuild("id, email, phone")}, "m2")]})
    assert cli("resume", tid, "--no-input").returncode == 3
    with sqlite3.connect(home / "threads" / tid / "workspace" / "devagent.db") as conn:
        conn.execute("ALTER TABLE users ADD COLUMN note text DEFAULT 'keep me'")
    assert cli("approve", tid, "--all").returncode == 0
    again = cli("resume", tid, "--no-input", "--json")
    assert again.returncode == 3, again.stderr
    [pending] = json.loads(again.stdout.splitlines()[-1])["pending"]
    assert pending["call_id"] == "m2" and "workspace changed before it started" in pending["workspace_notice"]
    assert any("devagent.db" in f for f in pending["changed_files"]), pending["changed_files"]
    assert "m2" not in llm.tool_outputs()
    assert rows(home, tid)[0] == (1, "a@example.com", "555-1", "keep me")
