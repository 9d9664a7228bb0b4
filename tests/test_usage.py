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
    assert "tokens: 2,400 in (2,000 cached) · 68 out (14 reasoning) · 2 model requests" in done.stdout

    log = json.loads(cli("log", data["thread"], "--json").stdout)
    [finished] = [e for e in log if e["event"] == "turn finished"]
    assert finished["detail"]["usage"] == {"requests": 2, "input_tokens": 2400, "cached_tokens": 2000,
                                           "output_tokens": 68, "reasoning_tokens": 14}


def test_usage_per_turn_and_per_thread_in_the_summary_threads_and_log(cli, llm) -> None:
    llm.script({"content": "first", "usage": USAGE}, {"content": "second", "usage": USAGE})
    first = cli("task", "one", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert first.returncode == 0, first.stderr
    thread = json.loads(first.stdout.splitlines()[-1])["thread"]
    second = cli("task", "two", "--thread", thread, "--no-input")
    assert second.returncode == 0, second.stderr
    assert "tokens: 1,200 in (1,000 cached) · 34 out (7 reasoning) · 1 model request" in second.stdout
    assert "thread so far: 2,400 in (2,000 cached) · 68 out (14 reasoning) · 2 model requests" in second.stdout
    assert "$" not in second.stdout  # no price table: no cost

    wide = cli("threads", "--wide")
    assert "2,400 (2,000) / 68 (14)" in wide.stdout and "$" not in wide.stdout
    [row] = json.loads(cli("threads", "--json").stdout)
    assert row["usage"] == {"requests": 2, "input_tokens": 2400, "cached_tokens": 2000, "output_tokens": 68,
                            "reasoning_tokens": 14}
    text = cli("log", thread).stdout
    assert text.count("1,200 in (1,000 cached) · 34 out (7 reasoning) · 1 model request · stub") == 2


def test_a_price_table_gives_a_cost_estimate(cli, llm, tmp_path) -> None:
    import os
    from pathlib import Path

    config = Path(os.environ["XDG_CONFIG_HOME"]) / "devagent" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    # USD per million tokens: (200 × 2 + 1,000 cached × 0.5 + 34 × 8) / 1e6 = $0.001172 a request
    config.write_text('model = "stub"\n\n[prices.stub]\ninput = 2.0\ncached_input = 0.5\noutput = 8.0\n')
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "true"}, "s1")], "usage": USAGE},
               {"content": "done", "usage": USAGE})
    paused = cli("task", "go", "--base-url", llm.url, "--no-input", "--json")
    assert paused.returncode == 3, paused.stderr
    summary = json.loads(paused.stdout.splitlines()[-1])
    assert summary["usage"]["cost_usd"] == pytest.approx(0.001172)  # a paused run reports it too
    assert cli("approve", summary["thread"], "--all").returncode == 0
    done = cli("resume", summary["thread"], "--no-input")
    assert done.returncode == 0, done.stderr
    assert "tokens: 2,400 in (2,000 cached) · 68 out (14 reasoning) · 2 model requests · ≈ $0.0023" in done.stdout
    assert "$0.0023" in cli("threads", "--wide").stdout
    [row] = json.loads(cli("threads", "--json").stdout)
    assert row["usage"]["cost_usd"] == pytest.approx(0.002344)

    config.write_text('[prices.stub]\ninput = "cheap"\noutput = 1\n')
    from devagent.config import ConfigError, load_prices

    with pytest.raises(ConfigError, match="prices.stub.input must be a number"):
        load_prices(None)
