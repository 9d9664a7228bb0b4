"""A human's decision on a call, and the request it is taken on, from the store alone.

`devagent approve` and `reject` record decisions without running anything: this module holds
what they need (and what the runner applies the same way), so that they import neither the runner
nor the sandbox. SQL that destroys data is approved only with the typed names of exactly what it
destroys, and never remembered as "always".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devagent.approvals import ApprovalRequest, build_request
from devagent.config import thread_limits
from devagent.store import Approval, Store, Thread


@dataclass(frozen=True)
class Decision:
    approved: bool
    reason: str | None = None
    always: bool = False
    # The names the human typed to approve SQL that destroys data (one per destroyed object).
    # Approving such SQL without exactly these names records nothing.
    confirmed: tuple[str, ...] = ()
    stop: bool = False  # reject, and end the turn once the calls already approved have run
    # `a` on a command: save the rules the screen offered (request.rule_offer) for "thread",
    # "project" (.devagent/policy.toml in the user's checkout) or "user" (~/.config/devagent).
    rule_scope: str | None = None


def confirmation_words(sql: str, dialect: str, probe: dict | None = None) -> tuple[str, ...]:
    """The names a human types to approve this SQL, one per object it destroys (and one per table
    it would empty row by row, when `probe` counted that); () when it destroys nothing. The one
    place that reads them from the analysis."""
    from devagent.sql_analysis import FALLBACK_CONFIRMATION
    from devagent.sql_rowcount import confirmation_words as with_counts, probed_analysis, probed_counts

    analysis = probed_analysis(sql, dialect, probe)
    words = with_counts(analysis, probed_counts(sql, probe))
    if not words and not analysis.destructive:
        return ()
    return tuple(dict.fromkeys(w for w in words if w)) or (FALLBACK_CONFIRMATION,)


def same_words(typed: tuple[str, ...] | list[str], required: tuple[str, ...]) -> bool:
    """Whether what was typed names exactly the objects the SQL destroys (order aside)."""
    return bool(required) and set(typed) == set(required)


def required_confirmation(request: ApprovalRequest) -> tuple[str, ...]:
    """The names a human must type to approve this call: one per object its SQL destroys."""
    if request.tool != "run_migration":
        return ()
    return confirmation_words(request.sql or "", request.sql_dialect, request.sql_probe)


def call_request(store: Store, thread: Thread, approval: Approval, **screen: Any) -> ApprovalRequest:
    """What a call is: its command or SQL and whether it can run. `screen`: what the approval
    screen adds about the workspace (changed_files, changes_error, workspace_fingerprint,
    workspace_notice). What only a migration has (its file, the database's dialect and what was
    read from it) is looked up only for a migration."""
    migration: dict[str, Any] = {}
    if approval.tool == "run_migration":
        from devagent.migrations import Database, bound_sql_digest, load_sql_for_display, proposed_probe
        from devagent.paths import WorkspacePaths
        from devagent.workspace import ThreadWorkspace

        work_dir = ThreadWorkspace.of(store.home, thread.id).work_dir
        migration = dict(
            sql_loader=lambda rel: load_sql_for_display(WorkspacePaths(work_dir), rel),
            sql_bound_sha256=bound_sql_digest(store, thread.id, approval.call_id),
            sql_dialect=Database.parse(thread.settings.get("database")).engine,
            sql_probe=proposed_probe(store, thread.id, approval.call_id),
        )
    return build_request(
        approval, network=bool(thread.settings.get("network")),
        default_timeout_s=thread_limits(thread.settings).default_timeout_s,
        interrupted_after_s=store.interrupted_after(thread.id, approval.call_id)
        if approval.status == "pending" else None,
        database=thread.settings.get("database_display") or thread.settings.get("database"),
        **screen, **migration,
    )


def record_decision(store: Store, request: ApprovalRequest, decision: Decision, *, actor: str = "user",
                    notice: Callable[[str], None] = lambda _text: None,
                    save_rules: Callable[[ApprovalRequest, str], dict[str, Any] | None] | None = None) -> Approval | None:
    """Record a human decision on a call. Approving SQL that destroys data counts only with the
    typed names of exactly what it destroys (and is never remembered as "always"); without them
    nothing is recorded and None is returned. `save_rules` writes the rules the screen offered
    (`a`), returning what to record about them."""
    if not decision.approved:
        return store.decide(request.thread_id, request.call_id, "rejected", actor=actor, reason=decision.reason)
    required = required_confirmation(request)
    if required and not same_words(decision.confirmed, required):
        return None
    confirmed = tuple(dict.fromkeys(decision.confirmed)) if required else ()
    if confirmed and decision.always:
        notice("approved this once: SQL that destroys data is never remembered as 'always'")
    detail = None
    if (decision.rule_scope and request.rule_offer and not required and request.tool == "run_shell"
            and save_rules is not None):
        detail = save_rules(request, decision.rule_scope)
    return store.decide(request.thread_id, request.call_id, "approved", actor=actor,
                        always=decision.always, confirmed=confirmed, detail=detail)


__all__ = ["Decision", "confirmation_words", "same_words", "required_confirmation", "call_request", "record_decision"]
