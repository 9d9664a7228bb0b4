"""The agent's model: what a Chat Completions server receives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, function_tool

from devagent.agent import ModelChoice
from llm_stub import StubLLM, tool_call


async def test_chat_requests_carry_the_body_the_openai_client_would_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """devagent builds chat request bodies itself (the client's transform grows with the
    conversation): every body of a real SDK run, tool calls, outputs and text in several
    scripts included, must be the one openai's own transform makes, and reach the server."""
    import openai.resources.chat.completions.completions as completions
    from openai._utils import async_maybe_transform as client_transform

    llm = StubLLM()
    try:
        model = ModelChoice("stub", llm.url).build()  # installs devagent's body builder
        ours = completions.async_maybe_transform
        assert ours is not client_transform
        compared: list[tuple[str, str]] = []

        async def both(data: Any, expected_type: Any) -> Any:
            mine = await ours(data, expected_type)
            compared.append((json.dumps(mine, sort_keys=True),
                             json.dumps(await client_transform(data, expected_type), sort_keys=True)))
            return mine

        monkeypatch.setattr(completions, "async_maybe_transform", both)

        @function_tool
        def run_shell(command: str) -> str:
            """Run a command."""
            return f"[exit code 0]\nran {command} — ✓ 日本語\n"

        llm.script({"tool_calls": [tool_call("run_shell", {"command": "ls -la"}, "c1"),
                                   tool_call("run_shell", {"command": "echo 'é'"}, "c2")]},
                   {"tool_calls": [tool_call("run_shell", {"command": "true"}, "c3")]},
                   {"content": "done"})
        agent = Agent(name="devagent", instructions="be careful", tools=[run_shell], model=model)
        result = await Runner.run(agent, "list the files", run_config=RunConfig(tracing_disabled=True))
    finally:
        llm.close()
    assert result.final_output == "done"
    assert len(compared) == 3 == len(llm.requests)
    for mine, theirs in compared:
        assert mine == theirs
    assert llm.tool_outputs()["c2"] == "[exit code 0]\nran echo 'é' — ✓ 日本語\n"
