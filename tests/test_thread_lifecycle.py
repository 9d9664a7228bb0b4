"""Threads never get stuck and never repeat the task: repeated tool-call ids across turns, a way
out of a run that cannot be restored, model API failures, Ctrl-C during a model call."""

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

from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")


def new_thread(cli, llm, task: str = "do the job"):
    result = cli("task", task, "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    return result, json.loads(result.stdout.splitlines()[-1]) if result.stdout.strip() else None


def test_a_server_that_restarts_its_call_numbering_every_turn_runs_five_turns(cli, llm, home: Path) -> None:
    thread_id = None
    for turn in range(5):
        # The same ids every turn, as servers that number calls per request do.
        llm.script(
            {"tool_calls": [tool_call("read_file", {"path": "README.md"}, "call_1_0")]},
            {"tool_calls": [tool_call("run_shell", {"command": f"echo turn-{turn}"}, "call_2_0")]},
            {"content": f"turn {turn} done"},
        )
        if thread_id is None:
            paused, data = new_thread(cli, llm, "turn 0")
            thread_id = data["thread"]
        else:
            paused = cli("task", f"turn {turn}", "--thread", thread_id, "--no-input", "--json")
            data = json.loads(paused.stdout.splitlines()[-1])
        assert paused.returncode == 3, paused.stderr
        [call] = data["pending"]
        assert call["command"] == f"echo turn-{turn}"
        assert cli("approve", thread_id, call["call_id"]).returncode == 0
        resumed = cli("resume", thread_id, "--no-input")
        assert resumed.returncode == 0, resumed.stderr
        assert f"turn {turn} done" in resumed.stdout

    log = json.loads(cli("log", thread_id, "--json").stdout)
    executed = [e for e in log if e["event"] == "executed"]
    assert [e["detail"]["output"].splitlines()[-1] for e in executed] == [f"turn-{n}" for n in range(5)]
    assert len({e["call_id"] for e in executed}) == 5
    # Every call the model sees back has exactly one result.
    outputs = [m for m in llm.requests[-1]["messages"] if m["role"] == "tool"]
    assert len(outputs) == len({m["tool_call_id"] for m in outputs}) == 10


def test_a_run_that_cannot_be_restored_has_a_way_out_that_keeps_the_branch(cli, llm, home: Path) -> None:
    llm.script(
        {"tool_calls": [tool_call("write_file", {"path": "kept.txt", "content": "work\n"}, "w1")]},
        {"tool_calls": [tool_call("run_shell", {"command": "echo never"}, "s1")]},
    )
    _, data = new_thread(cli, llm)
    thread_id = data["thread"]
    db = sqlite3.connect(home / "devagent.db")
    db.execute("UPDATE runs SET state_blob = ? WHERE thread_id = ?", ('{"$schemaVersion": "0.0"}', thread_id))
    db.commit()
    db.close()

    failed = cli("resume", thread_id, "--no-input")
    assert failed.returncode == 1
    assert f"devagent resume {thread_id} --abandon-turn" in failed.stderr

    out = cli("resume", thread_id, "--abandon-turn")
    assert out.returncode == 0, out.stderr
    assert "1 pending call not run" in out.stdout
    assert json.loads(cli("threads", "--json").stdout)[0]["state"] == "done"
    assert json.loads(cli("pending", thread_id, "--json").stdout) == []
    assert "kept.txt" in cli("diff", thread_id).stdout
    assert any(e["event"] == "turn abandoned" for e in json.loads(cli("log", thread_id, "--json").stdout))

    llm.script({"content": "fresh start"})
    again = cli("task", "next thing", "--thread", thread_id, "--no-input")
    assert again.returncode == 0, again.stderr
    tool_results = {m["tool_call_id"]: m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "tool"}
    assert "abandoned" in tool_results["s1"]
    assert llm.user_messages() == ["do the job", "next thing"]


def test_the_task_reaches_the_model_once_after_failed_model_calls(cli, llm, home: Path, repo: Path) -> None:
    dead = "http://127.0.0.1:9/v1"  # nothing listens there
    result = cli("task", "fix it", "--base-url", dead, "--model", "stub", "--no-input")
    assert result.returncode == 1
    assert dead in result.stderr and "--base-url" in result.stderr
    [row] = json.loads(cli("threads", "--json").stdout)
    assert row["state"] == "failed" and row["error"].startswith("model API error")
    for _ in range(2):
        assert cli("resume", row["id"], "--no-input").returncode == 1

    llm.script({"content": "fixed"})
    ok = cli("resume", row["id"], "--no-input", "--base-url", llm.url)
    assert ok.returncode == 0, ok.stderr
    assert llm.user_messages() == ["fix it"]
    assert json.loads(cli("threads", "--json").stdout)[0]["state"] == "done"


def test_the_task_reaches_the_model_once_after_ctrl_c_during_a_model_call(home: Path, repo: Path, llm) -> None:
    llm.script({"delay": 30, "content": "too late"})
    env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.Popen([sys.executable, "-m", "devagent", "task", "slow model", "--base-url", llm.url,
                             "--model", "stub", "--no-input"], cwd=repo, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not llm.requests and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    thread_id = json.loads(subprocess.run([sys.executable, "-m", "devagent", "threads", "--json"], cwd=repo,
                                          env=env, capture_output=True, text=True).stdout)[0]["id"]

    llm.steps.clear()
    llm.script({"content": "done now"})
    resumed = subprocess.run([sys.executable, "-m", "devagent", "resume", thread_id, "--no-input"], cwd=repo,
                             env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert llm.user_messages() == ["slow model"]


def test_a_call_killed_mid_run_is_pending_everywhere_and_says_for_how_long(cli, llm, home: Path, repo: Path) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "sleep 15; echo finished > slow.txt"}, "c1")]},
               {"content": "done"})
    _, data = new_thread(cli, llm)
    thread = data["thread"]
    assert cli("approve", thread, "--all").returncode == 0
    env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.Popen([sys.executable, "-m", "devagent", "resume", thread], cwd=repo, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while "executing" not in [e["event"] for e in json.loads(cli("log", thread, "--json").stdout)]:
        assert time.time() < deadline and proc.poll() is None, "the command never started"
        time.sleep(0.3)
    # While it runs it is not pending anywhere (its process is alive).
    assert json.loads(cli("threads", "--json").stdout)[0]["pending"] == 0
    assert json.loads(cli("pending", thread, "--json").stdout) == []
    time.sleep(4)
    proc.send_signal(signal.SIGKILL)  # no clean-up of any kind runs
    proc.wait()

    [row] = json.loads(cli("threads", "--json").stdout)
    assert row["state"] == "interrupted" and row["pending"] == 1
    [call] = json.loads(cli("pending", thread, "--json").stdout)
    assert call["call_id"] == "c1" and 3 <= call["interrupted_after_s"] <= 15
    screen = cli("pending", thread).stdout
    assert f"interrupted after {call['interrupted_after_s']:.0f} s" in screen and "sleep 15" in screen
    # approve sees it as pending, and resume runs what was approved again.
    approved = cli("approve", thread, "c1")
    assert approved.returncode == 0 and "approved c1" in approved.stdout
    llm.script({"content": "done"})
    rerun = cli("resume", thread, "--no-input", "--json", timeout=150)
    assert rerun.returncode == 0, rerun.stderr
    events = [e for e in json.loads(cli("log", thread, "--json").stdout) if e["call_id"] == "c1"]
    assert [e["event"] for e in events].count("executing") == 2 and events[-1]["event"] == "executed"
    assert json.loads(cli("threads", "--json").stdout)[0]["pending"] == 0


def test_resume_takes_the_model_and_server_from_flag_then_environment_then_the_thread(cli, llm) -> None:
    dead = "http://127.0.0.1:9/v1"
    failed = cli("task", "go", "--base-url", dead, "--model", "saved-model", "--no-input")
    assert failed.returncode == 1
    [line] = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert dead in line and "devagent resume" in line and "--base-url URL" in line
    thread = json.loads(cli("threads", "--json").stdout)[0]["id"]

    # The environment beats the thread's saved server; the flag beats the environment's model.
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "true"}, "s1")]})
    paused = cli("resume", thread, "--no-input", "--model", "flag-model",
                 env={"OPENAI_BASE_URL": llm.url, "DEVAGENT_MODEL": "env-model"})
    assert paused.returncode == 3, paused.stderr
    assert llm.requests[-1]["model"] == "flag-model"

    # Nothing given: what the thread was last run with (this server), but the environment's model.
    assert cli("approve", thread, "--all").returncode == 0
    llm.script({"content": "done"})
    done = cli("resume", thread, "--no-input", env={"DEVAGENT_MODEL": "env-model"})
    assert done.returncode == 0, done.stderr
    assert llm.requests[-1]["model"] == "env-model"


def test_a_process_killed_between_steps_resumes_from_the_conversation_and_runs_nothing_twice(
        cli, llm, home: Path, repo: Path) -> None:
    """Each step of a turn ends once its tools ran (the conversation holds their results): a
    process killed while the model thinks about the next step loses none of them, and resume
    continues from there without running any call again."""
    (repo / ".devagent").mkdir()
    (repo / ".devagent" / "policy.toml").write_text('[[rule]]\ndecision = "allow"\npattern = ["echo"]\n')
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "echo first-42"}, "k1")]},
               {"tool_calls": [tool_call("run_shell", {"command": "echo second"}, "k2")]},
               {"delay": 60, "content": "too late"})
    env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.Popen([sys.executable, "-m", "devagent", "task", "echo twice", "--base-url", llm.url,
                             "--model", "stub", "--no-input"], cwd=repo, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(llm.requests) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, "the third step never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # mid-think: no clean-up of any kind runs
    proc.wait()

    [row] = json.loads(cli("threads", "--json").stdout)
    assert row["state"] == "interrupted" and row["pending"] == 0
    llm.steps.clear()
    llm.script({"content": "both ran"})
    resumed = cli("resume", row["id"], "--no-input", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["final_output"] == "both ran"
    # The model is asked again with both results exactly as they ran, once each, and the task once.
    results = [m for m in llm.requests[-1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in results] == ["k1", "k2"]
    assert "first-42" in results[0]["content"] and "second" in results[1]["content"]
    assert not any("already ran once" in m["content"] for m in results)  # their own output, not a replay
    assert llm.user_messages() == ["echo twice"]
    log = json.loads(cli("log", row["id"], "--json").stdout)
    assert [e["call_id"] for e in log if e["event"] == "executing"] == ["k1", "k2"]
