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



def test_the_sdks_item_conversion_gives_what_its_own_code_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """devagent's fast path for the SDK's conversion of items (plain JSON nodes) must give exactly
    what the SDK's own walk gives, for plain nodes and for every other kind it meets."""
    from collections import OrderedDict

    from agents.util import _json
    from openai.types.chat import ChatCompletionMessageToolCall

    from devagent import chat_request

    ModelChoice("stub", "http://127.0.0.1:9/v1").build()  # installs it
    ours = _json._to_dump_compatible_internal
    sdk_walk = chat_request.sdk_items_walk()
    assert ours is not sdk_walk and sdk_walk.__module__ == "agents.util._json"

    def samples() -> list[Any]:  # made afresh for each side: a generator is used up once walked
        call = ChatCompletionMessageToolCall(id="c1", type="function",
                                             function={"name": "run_shell", "arguments": "{}"})
        return [
            {"role": "user", "content": "é ✓", "n": 1, "f": 1.5, "b": True, "none": None},
            [{"type": "function_call", "arguments": '{"command": "ls"}', "nested": ({"a": [1, (2, 3)]},)}],
            OrderedDict(a=(1, 2), b=OrderedDict(c=[{"d": "e"}])),  # a Mapping that is not a dict
            {"gen": (x for x in range(3)), "set": {"only"}, "range": range(2), "bytes": b"raw", "model": call},
            ("a tuple", ["in", ("a", "list")]),
        ]

    mine = [_json._to_dump_compatible(sample) for sample in samples()]
    monkeypatch.setattr(_json, "_to_dump_compatible_internal", sdk_walk)  # the SDK's walk, all the way down
    theirs = [_json._to_dump_compatible(sample) for sample in samples()]
    assert mine == theirs
    assert [type(x) for x in mine] == [type(x) for x in theirs]


def test_the_sdks_copy_of_a_run_input_is_a_deep_copy() -> None:
    """Every RunState copies the run's input (the whole conversation); devagent's plain walk must
    give what copy.deepcopy gives, sharing nothing with the original."""
    import copy

    from agents import run_state
    from openai.types.chat import ChatCompletionMessageToolCall

    ModelChoice("stub", "http://127.0.0.1:9/v1").build()  # installs it
    call = ChatCompletionMessageToolCall(id="c1", type="function", function={"name": "run_shell", "arguments": "{}"})
    original = [{"role": "user", "content": "é ✓", "n": 1, "f": 1.5, "b": True, "none": None},
                {"type": "function_call", "arguments": '{"command": "ls"}', "nested": [{"a": [1, (2, [3])]}]},
                {"model": call, "set": {"only"}, "bytes": b"raw"}]
    clone = run_state._clone_original_input(original)
    assert clone == copy.deepcopy(original)
    assert run_state._clone_original_input("a task") == "a task"
    clone[1]["nested"][0]["a"][1][1].append(4)
    clone[0]["content"] = "changed"
    clone[2]["set"].add("more")
    assert original[1]["nested"][0]["a"][1][1] == [3] and original[0]["content"] == "é ✓"
    assert original[2]["set"] == {"only"} and clone[2]["model"] is not call
