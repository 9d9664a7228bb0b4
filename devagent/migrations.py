"""SQL migrations: analysis for the approval screen, exact-bytes execution in the sandbox, history."""

from __future__ import annotations

from typing import Any


def attach_migrations(runtime: Any, settings: dict[str, Any]) -> str:
    """Wire run_migration for this thread; returns how the agent should think of its database."""
    return "a SQLite file devagent.db in the workspace"
