"""The agent: its instructions, its tools, and which model it talks to.

The agent is rebuilt identically for every turn and every resume (same name, same tools), which
is what the SDK needs to restore a saved RunState in another process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from agents import Agent, FunctionTool, ModelSettings
from agents.models.interface import Model

from devagent import chat_request
from devagent.errors import DevagentError

AGENT_NAME = "devagent"
DEFAULT_MODEL = "gpt-4.1"

INSTRUCTIONS = """\
You are devagent, a careful DevOps engineer working in a git checkout of the user's repository.
The checkout is mounted at /workspace inside a Linux container (Debian, non-root, {network}).
Tools:
- read_file, list_files, search, write_file, edit_file act on the checkout directly; paths are
  relative to the workspace root. The .git directory is off limits to file tools.
- run_shell runs one bash command in the container. A human approves every command before it
  runs, and may reject it with a reason: read the reason and adapt. Prefer one clear command per
  call; do not chain unrelated steps. Processes a command leaves running are stopped when it
  returns. Output is capped: print what matters.
- run_migration applies SQL to the thread's database ({database}) in one transaction, after a
  human approved the exact SQL. Put schema changes in a .sql file and pass its `path`, or pass
  `sql` directly. Never hide destructive statements.
Every turn's file changes are committed on the thread's branch for the user to review and merge.
When you are done, answer with a short summary of what you changed and how you verified it.
"""


@dataclass(frozen=True)
class ModelChoice:
    """Which model and endpoint a thread uses (persisted with the thread)."""

    name: str
    base_url: str | None = None

    @classmethod
    def resolve(cls, model: str | None, base_url: str | None) -> ModelChoice:
        return cls(
            name=model or os.environ.get("DEVAGENT_MODEL") or DEFAULT_MODEL,
            base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None,
        )

    def build(self) -> Model:
        """The SDK model. A base URL means any OpenAI-compatible server, via Chat Completions."""
        from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel
        from openai import AsyncOpenAI

        key = os.environ.get("OPENAI_API_KEY")
        if self.base_url:
            # Local servers (Ollama, vLLM, llama.cpp) accept any key; the client insists on one.
            client = AsyncOpenAI(base_url=self.base_url, api_key=key or "not-needed", max_retries=1)
            chat_request.install()  # the client's own body transform grows with the conversation
            return OpenAIChatCompletionsModel(model=self.name, openai_client=client)
        if not key:
            raise DevagentError(
                "no model configured: set OPENAI_API_KEY, or point --base-url / OPENAI_BASE_URL "
                "at an OpenAI-compatible server (Ollama, vLLM, llama.cpp, LiteLLM)"
            )
        return OpenAIResponsesModel(model=self.name, openai_client=AsyncOpenAI(api_key=key))


def build_agent(tools: list[FunctionTool], model: Model, *, network: bool, database: str,
                project_instructions: str = "") -> Agent:
    # str.format only on our own template: project text may hold braces.
    instructions = INSTRUCTIONS.format(
        network="network on" if network else "no network access",
        database=database,
    ) + project_instructions
    # include_usage: OpenAI-compatible servers report token usage in a stream only when asked.
    return Agent(name=AGENT_NAME, instructions=instructions, tools=tools, model=model,
                 model_settings=ModelSettings(include_usage=True))


@dataclass
class TokenUsage:
    """Tokens as the API reports them; fields the API leaves out stay 0."""

    requests: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def add(self, other: TokenUsage) -> None:
        for name in ("requests", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @classmethod
    def of(cls, usage: object) -> TokenUsage:
        """From the SDK's Usage (get_response) or the Responses API's ResponseUsage (streaming)."""
        def number(obj: object, *names: str) -> int:
            for name in names:
                obj = getattr(obj, name, None)
            return obj if isinstance(obj, int) else 0

        return cls(1, number(usage, "input_tokens"), number(usage, "input_tokens_details", "cached_tokens"),
                   number(usage, "output_tokens"), number(usage, "output_tokens_details", "reasoning_tokens"))


class ThreadModel(Model):
    """The model as a thread sees it: tool-call ids unique in the thread, and usage counted.

    OpenAI-compatible servers often number tool calls per conversation or per request
    (`call_1_0` in one turn and again in the next). Approvals, the audit log and the SDK's saved
    run all identify a call by its id, so a repeated id would make a later turn's call look like an
    earlier one. A colliding id is renamed (`call_1_0` → `call_1_0.2`) before anything sees it; the
    server only ever gets back ids that came from here, so the conversation stays consistent.
    Every response's usage goes to `on_usage` (one call per model request), and its function
    calls, in order and with their final ids, to `on_calls` (before any of them runs).
    """

    def __init__(self, inner: Model, on_usage: Callable[[TokenUsage], None] = lambda _usage: None,
                 on_activity: Callable[[str | None], None] = lambda _what: None,
                 on_calls: Callable[[list[tuple[str, str]]], None] = lambda _calls: None) -> None:
        self.inner = inner
        self.on_usage = on_usage
        self.on_activity = on_activity  # "thinking" while a request is out
        self.on_calls = on_calls

    async def get_response(self, system_instructions, input, *args, **kwargs):  # type: ignore[override]
        self.on_activity("thinking")
        try:
            response = await self.inner.get_response(system_instructions, input, *args, **kwargs)
        finally:
            self.on_activity(None)
        renamer = _CallIdRenamer(_used_call_ids(input))
        for item in response.output:
            renamer.rename(item, final=True)
        self.on_usage(TokenUsage.of(response.usage))
        self.on_calls(_function_calls(response.output))
        return response

    async def stream_response(self, system_instructions, input, *args, **kwargs):  # type: ignore[override]
        renamer = _CallIdRenamer(_used_call_ids(input))
        self.on_activity("thinking")
        try:
            async for event in self.inner.stream_response(system_instructions, input, *args, **kwargs):
                item = getattr(event, "item", None)
                if item is not None:
                    renamer.rename(item)
                response = getattr(event, "response", None)
                for item in getattr(response, "output", None) or ():
                    renamer.rename(item, final=True)
                if getattr(event, "type", None) == "response.completed":
                    self.on_activity(None)
                    self.on_usage(TokenUsage.of(getattr(response, "usage", None)))
                    self.on_calls(_function_calls(getattr(response, "output", None) or ()))
                yield event
        finally:
            self.on_activity(None)

    async def close(self) -> None:
        await self.inner.close()

    def get_retry_advice(self, request):  # type: ignore[override]
        return self.inner.get_retry_advice(request)


def _function_calls(output: object) -> list[tuple[str, str]]:
    """(tool name, call id) of each function call of a response's output, in its order."""
    return [(str(getattr(item, "name", "")), _call_id_of(item) or "") for item in output  # type: ignore[attr-defined]
            if getattr(item, "type", None) == "function_call"]


def _call_id_of(item: object) -> str | None:
    value = item.get("call_id") if isinstance(item, dict) else getattr(item, "call_id", None)
    return value if isinstance(value, str) else None


def _used_call_ids(input: object) -> set[str]:
    if not isinstance(input, list):
        return set()
    return {cid for cid in map(_call_id_of, input) if cid}


class _CallIdRenamer:
    def __init__(self, used: set[str]) -> None:
        self.used = used
        self.renamed: dict[str, str] = {}  # original id -> id given out, for this one response
        self.final_seen: set[str] = set()

    def rename(self, item: object, *, final: bool = False) -> None:
        original = _call_id_of(item)
        if original is None or isinstance(item, dict):
            return
        new = self.renamed.get(original)
        if new is None or (final and new in self.final_seen):
            new = original
            n = 1
            while new in self.used:
                n += 1
                new = f"{original}.{n}"
            self.used.add(new)
            self.renamed[original] = new
        if final:
            self.final_seen.add(new)
        if new != original:
            item.call_id = new  # type: ignore[attr-defined]
