"""The body of a Chat Completions request, built in time proportional to its size.

Before every request, the openai client walks the whole body against its TypedDict annotations
(`async_maybe_transform`), resolving `typing` origins and unions for every node of every
message. For a chat request that walk only drops omitted arguments and turns iterables into
lists: no chat parameter has a key alias or a date/file format. But it costs ~1 ms per tool call
of history, on every model request, so a turn of 200 commands spent more time there than in the
commands. `install()` replaces it, for chat completion requests only, with a plain walk that
gives the same JSON; every other request keeps the client's own transform.

The agents SDK makes the same kind of walk (`_to_dump_compatible`: every mapping a dict, every
iterable a list) over the whole conversation several times per step, with `isinstance` checks
against abstract classes at every node. `install()` gives it a fast path for the plain nodes
that JSON is made of; any other node still goes through the SDK's own code. It also deep-copies
the whole conversation for every `RunState` it makes (twice a step when a call is approved):
`install()` copies plain JSON nodes with a plain walk, and hands any other node to `copy.deepcopy`.
"""

from __future__ import annotations

from typing import Any

_installed = False
_SCALARS = (str, int, float, bool, type(None))  # the leaves of JSON
_sdk_items_walk: Any = None  # the SDK's own `_to_dump_compatible_internal`, once replaced


def sdk_items_walk() -> Any:
    """The SDK's own item walk (what `install` replaced)."""
    if _sdk_items_walk is not None:
        return _sdk_items_walk
    from agents.util import _json

    return _json._to_dump_compatible_internal


def plain_body(value: Any) -> Any:
    """`value` as the JSON body the openai client would send: omitted arguments dropped,
    iterables as lists, pydantic models as their JSON dump (set fields only)."""
    from openai._types import NotGiven, Omit
    from pydantic import BaseModel

    omitted = (Omit, NotGiven)
    scalars = _SCALARS

    # A leaf (most nodes) is kept as it is without a call of its own, and without an isinstance
    # check against pydantic's BaseModel, whose metaclass makes every such check slow.
    def walk(node: Any) -> Any:
        kind = type(node)
        if kind is dict or (kind not in scalars and isinstance(node, dict)):
            return {key: item if type(item) in scalars else walk(item)
                    for key, item in node.items() if type(item) in scalars or not isinstance(item, omitted)}
        if kind is list or kind is tuple or (kind not in scalars and isinstance(node, (list, tuple))):
            return [item if type(item) in scalars else walk(item) for item in node]
        if kind not in scalars and isinstance(node, BaseModel):
            return node.model_dump(exclude_unset=True, mode="json")
        return node

    return walk(value)


def _plain_walk(other: Any, sequences: tuple[type, ...]) -> Any:
    """A copy of a tree: dicts as dicts, `sequences` as lists, scalars as they are (a leaf
    without a call of its own); any other node through `other`."""
    scalars = _SCALARS

    def walk(node: Any) -> Any:
        kind = type(node)
        if kind is dict:
            return {key: item if type(item) in scalars else walk(item) for key, item in node.items()}
        if kind in sequences:
            return [item if type(item) in scalars else walk(item) for item in node]
        if kind in scalars:
            return node
        return other(node)

    return walk


def plain_items(sdk_walk: Any) -> Any:
    """The SDK's `_to_dump_compatible_internal`, with plain JSON nodes (dict, list, tuple, str,
    numbers, None) handled without its abstract-class checks; the result is the same. Any other
    node goes to `sdk_walk`, whose own recursion comes back here (installed in its place)."""
    return _plain_walk(sdk_walk, (list, tuple))


def plain_copy(value: Any) -> Any:
    """`copy.deepcopy(value)`, with dicts, lists and scalars copied by a plain walk (a
    conversation is a tree of them, made from JSON: no node is shared or part of a cycle)."""
    import copy

    return _plain_walk(copy.deepcopy, (list,))(value)


def install() -> None:
    """Use `plain_body` for chat completion requests of this process, and `plain_items` for the
    agents SDK's conversion of items (idempotent)."""
    global _installed
    if _installed:
        return
    from agents.util import _json

    global _sdk_items_walk
    _sdk_items_walk = _json._to_dump_compatible_internal
    _json._to_dump_compatible_internal = plain_items(_sdk_items_walk)
    from agents import run_state

    run_state._clone_original_input = lambda original: original if isinstance(original, str) else plain_copy(original)
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
