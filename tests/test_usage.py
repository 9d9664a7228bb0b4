"""Token usage, as the API reports it, per turn (across the processes of a paused turn)."""

from __future__ import annotations

import json

import pytest

from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")

USAGE = {"prompt_tokens": 1200, "completion_tokens": 34, "total_tokens": 1234,
         "prompt_tokens_details": {"cached_tokens": 1000}, "completion_tokens_details": {"reasoning_tokens": 7}}


def test_a_paused_turn_reports_the_usage_of_all_its_model_requests(cli, llm) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "true"}, "s1")], "usage": USAGE},
               {"content": "all done", "usage": USAGE})
    paused = cli("task", "go", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert paused.returncode == 3, paused.stderr
    data = json.loads(paused.stdout.splitlines()[-1])
    assert cli("approve", data["thread"], "--all").returncode == 0

    done = cli("resume", data["thread"], "--no-input")
    assert done.returncode == 0, done.stderr
    assert "tokens: 2,400 in (2,000 cached) · 68 out (14 reasoning) · 2 model request(s)" in done.stdout

    log = json.loads(cli("log", data["thread"], "--json").stdout)
    [finished] = [e for e in log if e["event"] == "turn finished"]
    assert finished["detail"]["usage"] == {"requests": 2, "input_tokens": 2400, "cached_tokens": 2000,
                                           "output_tokens": 68, "reasoning_tokens": 14}
