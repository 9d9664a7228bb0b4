"""Token usage as the API reported it, added up, shown, and priced when the user gave prices.

A usage record is one model request's counts (`requests`, `input_tokens`, `cached_tokens`,
`output_tokens`, `reasoning_tokens`; what the API did not report is 0) plus the model's name.
Cached tokens are part of the input tokens and reasoning tokens part of the output tokens, as the
OpenAI APIs count them. Without a price for the model no cost is given: none is made up.
"""

from __future__ import annotations

from devagent.words import count

from collections.abc import Iterable
from typing import Any

COUNTS = ("requests", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
PRICE_FIELDS = ("input", "cached_input", "output")  # USD per million tokens


def add_up(records: Iterable[dict[str, Any] | None]) -> dict[str, int]:
    """The counts of several records added up (only the counts that were reported)."""
    total: dict[str, int] = {}
    for record in records:
        for key, value in (record or {}).items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total


def usage_line(usage: dict[str, int], cost: float | None = None) -> str:
    """`2,400 in (2,000 cached) · 68 out (14 reasoning) · 2 model requests`, then `≈ $0.0123`
    when priced; a count the API did not report is left out."""
    line = f"{usage.get('input_tokens', 0):,} in"
    if usage.get("cached_tokens"):
        line += f" ({usage['cached_tokens']:,} cached)"
    line += f" · {usage.get('output_tokens', 0):,} out"
    if usage.get("reasoning_tokens"):
        line += f" ({usage['reasoning_tokens']:,} reasoning)"
    line += f" · {count(usage.get('requests', 0), 'model request')}"
    if cost is not None:
        line += f" · ≈ {format_cost(cost)}"
    return line


def format_cost(cost: float) -> str:
    return f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"


def check_prices(table: Any, where: str) -> dict[str, dict[str, float]]:
    """`[prices."MODEL"]` tables: input, cached_input (default: input), output, USD per million
    tokens. Raises ValueError naming what is wrong."""
    if not isinstance(table, dict):
        raise ValueError(f"{where}: [prices] must hold one table per model, e.g. [prices.\"gpt-4.1\"]")
    out: dict[str, dict[str, float]] = {}
    for model, fields in table.items():
        if not isinstance(fields, dict):
            raise ValueError(f"{where}: prices.{model} must be a table with input and output (USD per million tokens)")
        unknown = sorted(set(fields) - set(PRICE_FIELDS))
        if unknown:
            raise ValueError(f"{where}: prices.{model}: unknown field {unknown[0]!r} (known: {', '.join(PRICE_FIELDS)})")
        for name in ("input", "output"):
            if name not in fields:
                raise ValueError(f"{where}: prices.{model} needs {name} (USD per million tokens)")
        for name, value in fields.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{where}: prices.{model}.{name} must be a number ≥ 0 (got {value!r})")
        out[str(model)] = {"input": float(fields["input"]), "output": float(fields["output"]),
                           "cached_input": float(fields.get("cached_input", fields["input"]))}
    return out


def cost(records: Iterable[dict[str, Any] | None], prices: dict[str, dict[str, float]],
         default_model: str | None = None) -> float | None:
    """The estimated cost in USD of these requests, each at its model's price; None when any of
    them used a model without a price (a partial sum would look like the whole)."""
    total, priced = 0.0, False
    for record in records:
        record = record or {}
        price = prices.get(str(record.get("model") or default_model or ""))
        if price is None:
            return None
        cached = min(record.get("cached_tokens", 0), record.get("input_tokens", 0))
        total += ((record.get("input_tokens", 0) - cached) * price["input"] + cached * price["cached_input"]
                  + record.get("output_tokens", 0) * price["output"]) / 1_000_000
        priced = True
    return round(total, 6) if priced else None


def priced_total(records: list[dict[str, Any]], prices: dict[str, dict[str, float]],
                 default_model: str | None = None) -> dict[str, Any]:
    """The records added up, plus `cost_usd` when every request is priced."""
    usage = add_up(records)
    estimate = cost(records, prices, default_model) if prices else None
    return {**usage, "cost_usd": estimate} if estimate is not None else usage
