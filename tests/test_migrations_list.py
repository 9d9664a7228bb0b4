"""`devagent migrations`: what ran, as a user reads it."""

from __future__ import annotations

import json

import pytest

from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")


def test_the_list_names_each_migration_and_says_a_failed_one_changed_nothing(cli, llm) -> None:
    llm.script(
        {"tool_calls": [tool_call("write_file", {"path": "db/001_users.sql",
                                                 "content": "CREATE TABLE users (id INTEGER PRIMARY KEY);\n"}, "w1")]},
        {"tool_calls": [tool_call("run_migration", {"path": "db/001_users.sql"}, "m1")]},
        {"tool_calls": [tool_call("run_migration", {"sql": "INSERT INTO users VALUES (1);\nINSERT INTO nope VALUES (2);"}, "m2")]},
        {"content": "done"},
    )
    paused = cli("task", "schema", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    thread = json.loads(paused.stdout.splitlines()[-1])["thread"]
    for _ in range(2):
        assert cli("approve", thread, "--all").returncode == 0
        cli("resume", thread, "--no-input")

    text = cli("migrations", thread).stdout
    applied, failed = [line for line in text.splitlines() if line.strip() and not line.startswith("    ")]
    assert "applied" in applied and "db/001_users.sql" in applied and "1 statement " in applied
    assert "failed" in failed and "INSERT INTO users VALUES (1);" in failed and "2 statements" in failed
    assert "rolled back, nothing applied" in text and "nope" in text
