"""Durable runs through the real CLI, one process per step, against the OpenAI-compatible stub.

This is the CI flow: `task --no-input` pauses (exit 3), `approve` and `resume` happen in other
processes, and `log` tells the whole story.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import git
from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")


def start(cli, llm, *extra: str, task: str = "do the job"):
    result = cli("task", task, "--base-url", llm.url, "--model", "stub", "--no-input", "--json", *extra)
    return result, (json.loads(result.stdout.splitlines()[-1]) if result.stdout.strip() else None)


def test_pause_in_one_process_approve_and_resume_in_others(cli, llm, home: Path, repo: Path) -> None:
    llm.script(
        {"tool_calls": [tool_call("write_file", {"path": "notes.txt", "content": "hello\n"}, "w1")]},
        {"tool_calls": [tool_call("run_shell", {"command": "wc -l notes.txt > count.txt"}, "s1")]},
        {"content": "Counted the lines."},
    )
    paused, data = start(cli, llm)
    assert paused.returncode == 3, paused.stderr
    thread_id = data["thread"]
    assert data["status"] == "paused"
    [call] = data["pending"]
    assert call["call_id"] == "s1" and call["tool"] == "run_shell"
    assert call["command"] == "wc -l notes.txt > count.txt"
    import hashlib

    assert call["sha256"] == hashlib.sha256(b"wc -l notes.txt > count.txt").hexdigest()
    assert call["thread"] == thread_id and call["network"] is False

    listed = json.loads(cli("pending", thread_id, "--json").stdout)
    assert [p["call_id"] for p in listed] == ["s1"]
    assert json.loads(cli("threads", "--json").stdout)[0]["state"] == "paused"

    assert cli("approve", thread_id, "--all").returncode == 0
    resumed = cli("resume", thread_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "Counted the lines." in resumed.stdout + resumed.stderr
    workspace = home / "threads" / thread_id / "workspace"
    assert (workspace / "count.txt").read_text().strip() == "1 notes.txt"
    subject = subprocess.run(["git", "-c", "safe.directory=*", "--git-dir", str(workspace.parent / "git"), "log",
                              "-1", "--format=%s"], capture_output=True, text=True, check=True).stdout
    assert subject.strip() == "do the job"

    log = json.loads(cli("log", thread_id, "--json").stdout)
    story = [(e["event"], e["call_id"]) for e in log if e["call_id"]]
    assert story == [("file changed", "w1"), ("proposed", "s1"), ("approved", "s1"), ("executing", "s1"),
                     ("executed", "s1")]
    executed = [e for e in log if e["event"] == "executed"][0]
    assert executed["exit_code"] == 0 and executed["duration_s"] > 0
    assert json.loads(cli("threads", "--json").stdout)[0]["state"] == "done"
    human = cli("log", thread_id).stdout
    assert "approved" in human and "wc -l notes.txt" in human


def test_partial_approval_then_rejection_reason_reaches_the_model(cli, llm, home: Path) -> None:
    llm.script(
        {"tool_calls": [
            tool_call("run_shell", {"command": "echo one > one.txt"}, "c1"),
            tool_call("run_shell", {"command": "rm -rf /workspace/*"}, "c2"),
            tool_call("run_shell", {"command": "echo three > three.txt"}, "c3"),
        ]},
        {"content": "finished"},
    )
    paused, data = start(cli, llm)
    assert paused.returncode == 3
    thread_id = data["thread"]
    assert [p["call_id"] for p in data["pending"]] == ["c1", "c2", "c3"]

    assert cli("approve", thread_id, "c1").returncode == 0
    assert cli("reject", thread_id, "c2", "--reason", "never delete the workspace").returncode == 0
    again = cli("resume", thread_id, "--json")
    assert again.returncode == 3, again.stderr
    workspace = home / "threads" / thread_id / "workspace"
    assert (workspace / "one.txt").exists()  # the approved call ran
    assert [p["call_id"] for p in json.loads(again.stdout.splitlines()[-1])["pending"]] == ["c3"]  # undecided stays pending
    assert (workspace / "README.md").exists()

    assert cli("approve", thread_id, "c3").returncode == 0
    done = cli("resume", thread_id)
    assert done.returncode == 0, done.stderr
    outputs = llm.tool_outputs()
    assert "never delete the workspace" in outputs["c2"]
    assert "exit code 0" in outputs["c1"] and "exit code 0" in outputs["c3"]
    assert (workspace / "three.txt").exists() and (workspace / "README.md").exists()


def test_the_calls_of_one_response_run_in_the_order_they_were_shown(cli, llm, home: Path) -> None:
    """Approved as "1 of 3", "2 of 3", "3 of 3", they run in that order, one after another: the
    query sees the table the migration before it made (the SDK would start them all at once)."""
    llm.script(
        {"tool_calls": [
            tool_call("run_migration", {"sql": "CREATE TABLE users (id INTEGER PRIMARY KEY);"}, "m1"),
            tool_call("run_shell", {"command": "sqlite3 devagent.db 'select count(*) from users' > count.txt"}, "c2"),
            tool_call("write_file", {"path": "done.txt", "content": "after both\n"}, "w3"),
        ]},
        {"content": "finished"},
    )
    paused, data = start(cli, llm)
    assert paused.returncode == 3, paused.stderr
    thread_id = data["thread"]
    assert [p["call_id"] for p in data["pending"]] == ["m1", "c2"]
    assert cli("approve", thread_id, "--all").returncode == 0
    done = cli("resume", thread_id)
    assert done.returncode == 0, done.stderr
    outputs = llm.tool_outputs()
    assert "exit code 0" in outputs["c2"], outputs["c2"]
    workspace = home / "threads" / thread_id / "workspace"
    assert (workspace / "count.txt").read_text() == "0\n"
    log = json.loads(cli("log", thread_id, "--json").stdout)
    ran = [e["call_id"] for e in log if e["event"] in ("executed", "migration applied")]
    assert ran.index("m1") < ran.index("c2"), ran


def test_a_file_call_after_one_that_waits_for_approval_is_not_done_until_it_has_run(cli, llm, home: Path) -> None:
    """The SDK would run an edit or a read of the same response at once, while the command before
    it waits: the command would then run on a file the model meant to change after it. The edit is
    not done, the model is told to send it again, and it is done after the command ran."""
    llm.script(
        {"tool_calls": [
            tool_call("read_file", {"path": "README.md"}, "r1"),
            tool_call("run_shell", {"command": "cat README.md > seen.txt"}, "c2"),
            tool_call("write_file", {"path": "README.md", "content": "# edited\n"}, "w3"),
            tool_call("read_file", {"path": "seen.txt"}, "r4"),
        ]},
        {"tool_calls": [tool_call("write_file", {"path": "README.md", "content": "# edited\n"}, "w5")]},
        {"content": "finished"},
    )
    paused, data = start(cli, llm)
    assert paused.returncode == 3, paused.stderr
    thread_id = data["thread"]
    workspace = home / "threads" / thread_id / "workspace"
    assert (workspace / "README.md").read_text() == "# project\n"
    assert cli("approve", thread_id, "c2").returncode == 0
    done = cli("resume", thread_id)
    assert done.returncode == 0, done.stderr
    outputs = llm.tool_outputs()
    assert outputs["r1"].startswith("# project")  # before the waiting call: done
    for later in ("w3", "r4"):
        assert outputs[later].startswith("not done: it comes after run_shell call c2, which waits"), outputs[later]
    assert (workspace / "seen.txt").read_text() == "# project\n"  # the command ran on the file as shown
    assert (workspace / "README.md").read_text() == "# edited\n"  # the edit, sent again, came after it
    log = json.loads(cli("log", thread_id, "--json").stdout)
    assert [(e["event"], e["call_id"]) for e in log if e["call_id"] in ("w3", "w5")] == [
        ("refused", "w3"), ("file changed", "w5")]


def wait_until_executing(cli, thread_id: str) -> None:
    """Until the audit log shows the approved command running in the container."""
    deadline = time.time() + 60
    while time.time() < deadline:
        if any(e["event"] == "executing" for e in json.loads(cli("log", thread_id, "--json").stdout)):
            return
        time.sleep(0.3)
    raise AssertionError("the command never started")


def resume_a_slow_approved_command(cli, llm, home: Path, repo: Path) -> tuple[str, subprocess.Popen]:
    """A thread whose approved 30 s command is running in a `devagent resume` process."""
    llm.script(
        {"tool_calls": [tool_call("run_shell", {"command": "sleep 30; echo finished > slow.txt"}, "c1")]},
        {"content": "done"},
    )
    _, data = start(cli, llm)
    thread_id = data["thread"]
    assert cli("approve", thread_id, "--all").returncode == 0
    env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.Popen([sys.executable, "-m", "devagent", "resume", thread_id], cwd=repo, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until_executing(cli, thread_id)
    return thread_id, proc


def _tamper(home: Path, thread_id: str, edit) -> None:
    db = sqlite3.connect(home / "devagent.db")
    (blob,) = db.execute("SELECT state_blob FROM runs WHERE thread_id=?", (thread_id,)).fetchone()
    db.execute("UPDATE runs SET state_blob=? WHERE thread_id=?", (edit(blob), thread_id))
    db.commit()
    db.close()


def test_a_saved_run_with_changed_arguments_is_refused(cli, llm, home: Path) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "echo safe"}, "c1")]}, {"content": "x"})
    _, data = start(cli, llm)
    thread_id = data["thread"]
    assert cli("approve", thread_id, "--all").returncode == 0
    _tamper(home, thread_id, lambda blob: blob.replace("echo safe", "touch pwned"))
    resumed = cli("resume", thread_id)
    assert resumed.returncode == 1
    assert "sha256 mismatch" in resumed.stderr and "Traceback" not in resumed.stderr
    assert not (home / "threads" / thread_id / "workspace" / "pwned").exists()


def test_a_saved_run_that_marks_a_call_approved_is_refused(cli, llm, home: Path) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "touch pwned"}, "c1")]}, {"content": "x"})
    _, data = start(cli, llm)
    thread_id = data["thread"]

    def approve_in_blob(blob: str) -> str:
        state = json.loads(blob)
        state["context"]["approvals"] = {"run_shell": {"approved": ["c1"], "rejected": []}}
        return json.dumps(state)

    _tamper(home, thread_id, approve_in_blob)
    resumed = cli("resume", thread_id)
    assert resumed.returncode == 1
    assert "never recorded" in resumed.stderr
    assert not (home / "threads" / thread_id / "workspace" / "pwned").exists()


def test_sigkill_during_a_command_then_resume_asks_again(cli, llm, home: Path, repo: Path) -> None:
    thread_id, proc = resume_a_slow_approved_command(cli, llm, home, repo)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(cli("threads", "--json").stdout)[0]["state"] == "interrupted"

    # The interrupted call is not silently re-run: it is pending again, with the state intact.
    again = cli("resume", thread_id, "--json")
    assert again.returncode == 3, again.stderr
    assert [p["call_id"] for p in json.loads(again.stdout.splitlines()[-1])["pending"]] == ["c1"]
    assert "interrupted" in [e["event"] for e in json.loads(cli("log", thread_id, "--json").stdout)]
    assert cli("approve", thread_id, "--all").returncode == 0
    done = cli("resume", thread_id, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (home / "threads" / thread_id / "workspace" / "slow.txt").read_text() == "finished\n"


def test_ctrl_c_during_a_command_kills_it_saves_the_run_and_resume_asks_again(cli, llm, home: Path, repo: Path) -> None:
    thread_id, proc = resume_a_slow_approved_command(cli, llm, home, repo)
    started = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.time() - started < 20  # the 30 s command was killed, not waited for
    assert "devagent resume" in err and "Traceback" not in err
    assert not (home / "threads" / thread_id / "workspace" / "slow.txt").exists()

    again = cli("resume", thread_id, "--json")
    assert again.returncode == 3, again.stderr
    assert [p["call_id"] for p in json.loads(again.stdout.splitlines()[-1])["pending"]] == ["c1"]
    assert cli("approve", thread_id, "--all").returncode == 0
    assert cli("resume", thread_id, timeout=120).returncode == 0
    assert (home / "threads" / thread_id / "workspace" / "slow.txt").read_text() == "finished\n"


def test_two_processes_resuming_one_thread_one_gets_busy(cli, llm, home: Path, repo: Path) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "sleep 4"}, "c1")]}, {"content": "done"})
    _, data = start(cli, llm)
    thread_id = data["thread"]
    cli("approve", thread_id, "--all")
    env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    procs = [subprocess.Popen([sys.executable, "-m", "devagent", "resume", thread_id], cwd=repo, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    busy = [err for code, err in results if code == 1][0]
    assert f"thread {thread_id} is busy" in busy


def test_max_turns_saves_work_and_says_how_to_continue(cli, llm, home: Path) -> None:
    llm.script(
        {"tool_calls": [tool_call("write_file", {"path": "part1.txt", "content": "1"}, "w1")]},
        {"tool_calls": [tool_call("write_file", {"path": "part2.txt", "content": "2"}, "w2")]},
    )
    result, _ = start(cli, llm, "--max-steps", "1")
    assert result.returncode == 1
    assert "devagent task --thread" in result.stderr and "Traceback" not in result.stderr
    thread_id = json.loads(cli("threads", "--json").stdout)[0]["id"]
    assert "part1.txt" in cli("diff", thread_id).stdout
    llm.script({"content": "continued"})  # after the write of part2.txt still queued
    again = cli("task", "continue", "--thread", thread_id, "--no-input", "--max-turns", "5")
    assert again.returncode == 0, again.stderr
    assert "part2.txt" in cli("diff", thread_id).stdout


def test_model_api_error_is_one_line_and_the_thread_is_kept(cli) -> None:
    result = cli("task", "x", "--base-url", "http://127.0.0.1:9/v1", "--model", "stub", "--no-input")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: model API error") and "Traceback" not in result.stderr
    assert len(json.loads(cli("threads", "--json").stdout)) == 1


def test_no_model_configured_is_a_clear_error(cli) -> None:
    result = cli("task", "x", env={"OPENAI_API_KEY": ""})
    assert result.returncode == 1
    assert "set OPENAI_API_KEY" in result.stderr and "--base-url" in result.stderr


def test_apply_merges_a_clean_branch_and_refuses_a_dirty_checkout(cli, llm, repo: Path) -> None:
    llm.script({"tool_calls": [tool_call("write_file", {"path": "feature.txt", "content": "new\n"}, "w1")]},
               {"content": "added"})
    done, data = start(cli, llm)
    assert done.returncode == 0, done.stderr
    thread_id = data["thread"]
    assert data["commit"]

    (repo / "README.md").write_text("dirty\n")
    refused = cli("apply", thread_id)
    assert refused.returncode == 1 and "uncommitted changes" in refused.stderr
    assert not (repo / "feature.txt").exists()

    git(repo, "checkout", "README.md")
    applied = cli("apply", thread_id)
    assert applied.returncode == 0, applied.stderr
    assert (repo / "feature.txt").read_text() == "new\n"
    assert "Merge devagent thread" in git(repo, "log", "-1", "--format=%s")


def test_usage_errors_exit_2_and_unknown_threads_exit_1(cli) -> None:
    assert cli("approve").returncode == 2
    unknown = cli("resume", "nope")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no thread 'nope'")


def test_the_paused_message_names_the_command_that_approves_each_call_destroying_data(cli, llm, home: Path) -> None:
    llm.script(
        {"tool_calls": [tool_call("run_migration", {"sql": "DROP TABLE IF EXISTS legacy_events;"}, "m1"),
                        tool_call("run_shell", {"command": "echo hi"}, "s1")]},
        {"content": "dropped it"},
    )
    paused = cli("task", "drop it", "--base-url", llm.url, "--model", "stub", "--no-input")
    assert paused.returncode == 3, paused.stderr
    tid = paused.stderr.split("thread ", 1)[1].split()[0]
    lines = paused.stdout.splitlines()
    assert f"thread {tid} is paused: 2 calls wait for approval." in lines, paused.stdout
    [hint] = [line.strip() for line in lines if "--confirm" in line]
    assert hint == f"devagent approve {tid} m1 --confirm legacy_events   (destroys data: legacy_events)", hint
    # The same words `approve --all` prints, and the printed command is the one that works.
    everything = cli("approve", tid, "--all")
    assert everything.returncode == 3
    assert f"approve it with: devagent approve {tid} m1 --confirm legacy_events" in everything.stdout
    confirmed = cli(*hint.split("   ")[0].split()[1:])
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert json.loads(cli("pending", tid, "--json").stdout) == []


def test_counts_in_messages_are_singular_for_one(cli, llm, home: Path) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "echo one"}, "s1")]}, {"content": "ran it"})
    paused = cli("task", "one", "--base-url", llm.url, "--model", "stub", "--no-input")
    assert paused.returncode == 3, paused.stderr
    tid = paused.stderr.split("thread ", 1)[1].split()[0]
    assert f"thread {tid} is paused: 1 call waits for approval." in paused.stdout, paused.stdout
    assert "(s)" not in paused.stdout + paused.stderr
    assert cli("approve", tid, "--all").returncode == 0
    done = cli("resume", tid)
    assert done.returncode == 0, done.stderr
    assert f"thread {tid} done: 1 command run, no file changes" in done.stdout, done.stdout
    assert "2 model requests" in done.stdout and "(s)" not in done.stdout, done.stdout
