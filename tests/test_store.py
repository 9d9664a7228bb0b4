"""The SQLite store: schema versions, decisions bound to exact arguments, locking."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from devagent.errors import StateCorrupted, ThreadBusy
from devagent.store import MIGRATIONS, SCHEMA_VERSION, Store, ThreadLock, sha256_text


def test_schema_migrates_forward_from_an_older_version(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "devagent.db", isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO threads VALUES ('t1','/r','devagent/t1','abc','done','{}',1,1)")
    db.close()
    store = Store(tmp_path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.thread("t1").branch == "devagent/t1"
    assert store.migrations("t1") == []


def test_a_newer_or_corrupted_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "devagent.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateCorrupted, match="unreadable"):
        Store(tmp_path)
    newer = tmp_path / "newer"
    newer.mkdir()
    sqlite3.connect(newer / "devagent.db").execute("PRAGMA user_version=99")
    with pytest.raises(StateCorrupted, match="newer devagent"):
        Store(newer)


def test_decisions_are_bound_to_call_and_exact_arguments(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create_thread("t1", "/r", "devagent/t1", "abc", {})
    args = '{"command": "ls"}'
    store.add_pending("t1", "c1", "run_shell", args)
    approval = store.decide("t1", "c1", "approved", actor="user", always=True)
    assert approval.status == "approved" and approval.sha256 == sha256_text(args)
    assert store.has_rule("t1", "run_shell", '{"command":"ls"}')  # same call, other spacing
    assert not store.has_rule("t1", "run_shell", '{"command": "ls "}')
    assert not store.has_rule("t1", "run_migration", args)
    events = [e["event"] for e in store.audit_log("t1")]
    assert events == ["proposed", "approved"]


def test_thread_lock_is_exclusive_and_released_when_the_holder_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from devagent.store import ThreadLock\n"
         f"lock = ThreadLock(Path({str(tmp_path)!r}), 't1').__enter__(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ThreadBusy, match=f"busy: pid {holder.pid}"):
        with ThreadLock(tmp_path, "t1"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with ThreadLock(tmp_path, "t1"):
        pass
