"""The body of a Chat Completions request, built in time proportional to its size.

Before every request, the openai client walks the whole body against its TypedDict annotations
(`async_maybe_transform`), resolving `typing` origins and unions for every node of every
message. For a chat request that walk only drops omitted arguments and turns iterables into
lists: no chat parameter has a key alias or a date/file format. But it costs ~1 ms per tool call
of history, on every model request, so a turn of 200 commands spent more time there than in the
commands. `install()` replaces it, for chat completion requests only, with a plain walk that
gives the same JSON; every other request keeps the client's own transform.
"""

from __future__ import annotations

from typing import Any

_installed = False


def plain_body(value: Any) -> Any:
    """`value` as the JSON body the openai client would send: omitted arguments dropped,
    iterables as lists, pydantic models as their JSON dump (set fields only)."""
    from openai._types import NotGiven, Omit
    from pydantic import BaseModel

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: walk(item) for key, item in node.items() if not isinstance(item, (Omit, NotGiven))}
        if isinstance(node, (list, tuple)):
            return [walk(item) for item in node]
        if isinstance(node, BaseModel):
            return node.model_dump(exclude_unset=True, mode="json")
        return node

    return walk(value)


def install() -> None:
    """Use `plain_body` for chat completion requests of this process (idempotent)."""
    global _installed
    if _installed:
        return
    import openai.resources.chat.completions.completions as completions
    from openai.types.chat import completion_create_params as params

    chat = (params.CompletionCreateParamsStreaming, params.CompletionCreateParamsNonStreaming,
            params.CompletionCreateParamsBase)
    client_transform = completions.async_maybe_transform

    async def transform(data: object, expected_type: object) -> Any:
        if expected_type in chat and isinstance(data, dict):
            return plain_body(data)
        return await client_transform(data, expected_type)

    completions.async_maybe_transform = transform
    _installed = True
