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


def _v3_store(path: Path) -> None:
    """A store as devagent with schema 3 left it: a thread, a call and its history."""
    db = sqlite3.connect(path / "devagent.db", isolation_level=None)
    for migration in MIGRATIONS[:3]:
        for statement in migration.split(";"):
            if statement.strip():
                db.execute(statement)
    db.execute("PRAGMA user_version=3")
    db.execute("INSERT INTO threads VALUES ('t1','/r','devagent/t1','abc','paused','{}',1,1)")
    db.execute("INSERT INTO approvals (thread_id, call_id, tool, arguments, sha256, status, created_at)"
               " VALUES ('t1','c1','run_shell','{}','x','pending',1)")
    rows = [("proposed", "c1", "{}"), ("workspace seen", None, '{"call_id": "c1", "fingerprint": "f1"}'),
            ("workspace seen", None, '{"call_id": "c2", "fingerprint": "f2"}'),
            ("workspace seen", None, '{"call_id": "c1", "fingerprint": "f3"}'), ("task", None, '{"task": "t"}')]
    for n, (event, call_id, detail) in enumerate(rows):
        db.execute("INSERT INTO audit (thread_id, at, event, call_id, detail) VALUES ('t1',?,?,?,?)",
                   (n, event, call_id, detail))
    db.close()


def _plan(store: Store, sql: str, args: tuple) -> str:
    return " ".join(str(r[-1]) for r in store.db.execute("EXPLAIN QUERY PLAN " + sql, args))


def test_an_existing_store_is_upgraded_and_its_history_found_by_call(tmp_path: Path) -> None:
    _v3_store(tmp_path)
    store = Store(tmp_path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # Events about a call, whether they carry its id or name it in their detail, written before the upgrade.
    seen = store.call_events("t1", "c1", "workspace seen")
    assert [e["detail"]["fingerprint"] for e in seen] == ["f1", "f3"]
    assert [e["event"] for e in store.call_events("t1", "c1", "proposed")] == ["proposed"]
    store.audit("t1", "workspace seen", actor="devagent", detail={"call_id": "c1", "fingerprint": "f4"})
    assert store.call_events("t1", "c1", "workspace seen")[-1]["detail"]["fingerprint"] == "f4"
    assert store.last_event("t1", "task")["detail"] == {"task": "t"}
    assert [a.call_id for a in store.approvals("t1", "pending")] == ["c1"]
    store.close()
    assert Store(tmp_path).call_events("t1", "c2", "workspace seen")[0]["detail"]["fingerprint"] == "f2"


def test_the_lookups_of_one_call_use_indexes_not_a_scan_of_the_history(tmp_path: Path) -> None:
    _v3_store(tmp_path)
    store = Store(tmp_path)
    lookups = {
        "audit_subject": ("SELECT * FROM audit WHERE thread_id=? AND subject=? AND event=? ORDER BY id",
                          ("t1", "c1", "workspace seen")),
        "audit_event": ("SELECT * FROM audit WHERE thread_id=? AND event=? ORDER BY id DESC LIMIT 1", ("t1", "task")),
        "approvals_status": ("SELECT * FROM approvals WHERE 1=1 AND thread_id=? AND status=? ORDER BY created_at, call_id",
                             ("t1", "pending")),
    }
    for index, (sql, args) in lookups.items():
        plan = _plan(store, sql, args)
        assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan


def test_a_batch_is_one_transaction_all_or_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create_thread("t1", "/r", "devagent/t1", "abc", {})
    store.add_pending("t1", "c1", "run_shell", '{"command": "ls"}')
    with pytest.raises(RuntimeError):
        with store.batch():
            store.mark_status("t1", "c1", "running")
            store.audit("t1", "executing", call_id="c1")
            raise RuntimeError("crash between the writes")
    assert store.approval("t1", "c1").status == "pending"
    assert [e["event"] for e in store.audit_log("t1")] == ["proposed"]
    with store.batch():
        store.mark_status("t1", "c1", "running")
        store.audit("t1", "executing", call_id="c1")
    other = Store(tmp_path)  # another connection sees both
    assert other.approval("t1", "c1").status == "running"
    assert [e["event"] for e in other.audit_log("t1")] == ["proposed", "executing"]


def test_a_committed_write_survives_sigkill_of_the_process(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from pathlib import Path; from devagent.store import Store\n"
         f"s = Store(Path({str(tmp_path)!r})); s.create_thread('t1', '/r', 'b', 'abc', {{}})\n"
         "with s.batch():\n    s.add_pending('t1', 'c1', 'run_shell', '{}'); s.mark_status('t1', 'c1', 'running')\n"
         "print('written', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert writer.stdout.readline().strip() == "written"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    store = Store(tmp_path)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.approval("t1", "c1").status == "running"
