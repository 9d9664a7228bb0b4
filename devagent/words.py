"""Counts in messages: `1 command`, `2 commands`; never `command(s)`."""

from __future__ import annotations


def count(n: int, word: str, plural: str | None = None) -> str:
    """`n` and `word`, in the plural unless n is 1 (`plural` when adding "s" is wrong)."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"
