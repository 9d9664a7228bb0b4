"""`task --json` / `resume --json`: JSON Lines on stdout as the run goes, read line by line the way
a CI script reads them, through the real CLI, the OpenAI-compatible stub and real containers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")

USAGE = {"prompt_tokens": 1000, "completion_tokens": 20, "total_tokens": 1020,
         "prompt_tokens_details": {"cached_tokens": 400}, "completion_tokens_details": {"reasoning_tokens": 5}}


def events(stdout: str) -> list[dict]:
    """Every stdout line is one JSON object of schema version 1 with a type; nothing else is there."""
    lines = stdout.splitlines()
    assert lines, "no output"
    parsed = [json.loads(line) for line in lines]  # fails on anything that is not one JSON object per line
    for event in parsed:
        assert event["v"] == 1 and isinstance(event["type"], str) and event["at"][-6] in "+-"
    return parsed


def of_type(stream: list[dict], type_: str) -> list[dict]:
    return [e for e in stream if e["type"] == type_]


def test_a_paused_run_then_its_resume_stream_every_step_and_end_with_a_summary(cli, llm, repo: Path) -> None:
    (repo / ".devagent").mkdir()
    (repo / ".devagent" / "policy.toml").write_text('[[rule]]\ndecision = "allow"\npattern = ["echo"]\n')
    write_args = json.dumps({"path": "notes.txt", "content": "hello\n"})
    llm.script(
        {"tool_calls": [tool_call("write_file", write_args, "w1")], "usage": USAGE},
        {"tool_calls": [tool_call("run_shell", {"command": "echo ruled"}, "r1"),
                        tool_call("run_shell", {"command": "wc -l notes.txt; exit 3"}, "s1")], "usage": USAGE},
        {"content": "Counted the lines.", "usage": USAGE},
    )
    paused = cli("task", "count the lines", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert paused.returncode == 3, paused.stderr
    stream = events(paused.stdout)
    thread = stream[0]["thread"]
    assert stream[0]["type"] == "thread.started" and stream[0]["new"] is True
    assert stream[0]["branch"] == f"devagent/{thread}"
    assert all(e["thread"] == thread for e in stream)
    [called] = [e for e in of_type(stream, "tool.called") if e["call_id"] == "w1"]
    assert called["arguments"] == write_args and called["needs_approval"] is False  # exact, as the model sent it
    [changed] = of_type(stream, "file.changed")
    assert (changed["path"], changed["tool"], changed["bytes"]) == ("notes.txt", "write_file", 6)
    assert [e["call_id"] for e in of_type(stream, "call.pending")] == ["r1", "s1"]
    [ruled] = of_type(stream, "call.decided")
    assert ruled["call_id"] == "r1" and ruled["decision"] == "approved"
    assert ruled["by"] == "rule .devagent/policy.toml:1" and ruled["rules"][0]["pattern"].startswith("echo")
    [ran] = of_type(stream, "command.finished")  # what a rule approved runs before the run pauses
    assert (ran["call_id"], ran["exit_code"], "ruled" in ran["output"]) == ("r1", 0, True)
    [paused_turn] = of_type(stream, "turn.paused")
    assert [p["call_id"] for p in paused_turn["pending"]] == ["s1"]
    assert paused_turn["pending"][0]["command"] == "wc -l notes.txt; exit 3"
    assert len(of_type(stream, "usage")) == 2 and of_type(stream, "usage")[0]["cached_tokens"] == 400
    summary = stream[-1]
    assert summary["type"] == "summary" and summary["status"] == "paused"
    assert [p["call_id"] for p in summary["pending"]] == ["s1"]
    assert summary["usage"] == {"requests": 2, "input_tokens": 2000, "cached_tokens": 800, "output_tokens": 40,
                                "reasoning_tokens": 10}
    assert summary["changed_files"] == ["A notes.txt"]
    assert "cost_usd" not in summary["usage"]  # no price table: no cost
    assert "thinking" not in paused.stdout  # the status line is never in the stream

    assert cli("approve", thread, "s1").returncode == 0
    resumed = cli("resume", thread, "--no-input", "--json")
    assert resumed.returncode == 0, resumed.stderr
    stream = events(resumed.stdout)
    assert stream[0]["type"] == "thread.resumed"
    decided = {e["call_id"]: e for e in of_type(stream, "call.decided")}
    assert decided["s1"]["decision"] == "approved" and decided["s1"]["by"] == "user"
    started = {e["call_id"]: e for e in of_type(stream, "command.started")}
    assert started["s1"]["command"] == "wc -l notes.txt; exit 3"
    finished = {e["call_id"]: e for e in of_type(stream, "command.finished")}
    assert list(finished) == ["s1"] and finished["s1"]["exit_code"] == 3
    assert not of_type(stream, "tool.output")  # a command's output is in command.finished, once
    assert "1 notes.txt" in finished["s1"]["output"] and finished["s1"]["output_bytes"] == len("1 notes.txt\n")
    assert finished["s1"]["duration_s"] >= 0 and finished["s1"]["timed_out"] is False
    order = [e["type"] for e in stream]
    assert order.index("command.started") < order.index("command.finished") < order.index("message")
    assert of_type(stream, "message")[-1]["text"] == "Counted the lines."
    assert order[-2:] == ["turn.finished", "summary"]
    summary = stream[-1]
    assert summary["status"] == "done" and summary["final_output"] == "Counted the lines."
    assert summary["commit"] and summary["changed_files"] == ["A notes.txt"]
    assert {(c["call_id"], c["command"], c["exit_code"]) for c in summary["commands"]} == {
        ("r1", "echo ruled", 0), ("s1", "wc -l notes.txt; exit 3", 3)}
    assert summary["commands_failed"] == 1
    assert summary["usage"]["requests"] == 3 and summary["thread_usage"]["requests"] == 3
    assert summary["pending"] == []


def test_an_error_is_a_json_line_on_stdout_and_one_line_on_stderr(cli, repo: Path) -> None:
    failed = cli("task", "go", "--base-url", "http://127.0.0.1:9/v1", "--model", "stub", "--no-input", "--json")
    assert failed.returncode == 1
    stream = events(failed.stdout)
    assert stream[0]["type"] == "thread.started"
    error = stream[-1]
    assert error["type"] == "error" and error["exit_code"] == 1
    assert "model API error" in error["message"] and "127.0.0.1:9" in error["message"]
    assert not of_type(stream, "summary")
    [line] = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert "model API error" in line and "Traceback" not in failed.stderr


def test_an_error_before_any_thread_exists_is_a_json_line_too(cli, tmp_path: Path) -> None:
    failed = cli("task", "go", "--repo", str(tmp_path), "--no-input", "--json")
    assert failed.returncode == 1
    [error] = events(failed.stdout)
    assert error["type"] == "error" and error["thread"] is None and "git repository" in error["message"]


def test_log_tells_one_event_per_line_with_file_edits_messages_and_output_on_request(cli, llm) -> None:
    import re

    llm.script(
        {"tool_calls": [tool_call("edit_file", {"path": "README.md", "old": "# project", "new": "# demo"}, "e1")]},
        {"tool_calls": [tool_call("run_shell", {"command": "echo one\necho two"}, "s1")]},
        {"content": "Edited the title.\nAnd ran two echoes."},
    )
    paused = cli("task", "retitle", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    thread = json.loads(paused.stdout.splitlines()[-1])["thread"]
    assert cli("approve", thread, "--all").returncode == 0
    assert cli("resume", thread, "--no-input").returncode == 0

    log = json.loads(cli("log", thread, "--json").stdout)
    [edit] = [e for e in log if e["event"] == "file changed"]
    assert (edit["call_id"], edit["tool"], edit["detail"]["path"]) == ("e1", "edit_file", "README.md")
    [finished] = [e for e in log if e["event"] == "turn finished"]
    assert finished["detail"]["final_output"] == "Edited the title.\nAnd ran two echoes."
    assert finished["detail"]["changed_files"] == ["M README.md"]
    assert [e["detail"]["text"] for e in log if e["event"] == "message"] == ["Edited the title.\nAnd ran two echoes."]

    text = cli("log", thread).stdout  # a pipe: nothing is wrapped, every line is one event
    lines = text.splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}  \S")
    assert lines and all(stamp.match(line) for line in lines), text
    [proposed] = [line for line in lines if " proposed " in line]
    assert "s1  run_shell  echo one⏎echo two" in proposed
    [executed] = [line for line in lines if " executed " in line]
    assert "echo one⏎echo two" in executed and "(exit 0 · " in executed
    assert any("file changed" in line and "e1  edit_file  README.md" in line for line in lines)
    assert any("message" in line and "Edited the title.⏎And ran two echoes." in line for line in lines)
    assert "workspace seen" not in text and "fingerprint" not in text  # bookkeeping stays in --json
    assert "one\n" not in text  # the command's output only with --output

    with_output = cli("log", thread, "--output").stdout.splitlines()
    at = next(i for i, line in enumerate(with_output) if " executed " in line)
    assert any(line.strip() == "│ one" for line in with_output[at + 1:at + 6])
    assert any(line.strip() == "│ two" for line in with_output[at + 1:at + 6])


def test_the_stream_is_escaped_for_a_terminal_and_reads_back_exactly(cli, llm) -> None:
    hostile = "\x1b]0;pwned\x07 café \u202eevil\x7f\nnext"
    llm.script({"tool_calls": [tool_call("write_file", {"path": "x.txt", "content": hostile}, "w1")]},
               {"content": hostile})
    done = cli("task", "go", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.isascii() and "\x1b" not in done.stdout and "\x7f" not in done.stdout
    stream = events(done.stdout)
    assert of_type(stream, "message")[0]["text"] == hostile
    assert json.loads(of_type(stream, "tool.called")[0]["arguments"])["content"] == hostile
