"""Per-thread git checkouts on real git: branch, turn commits, diff, apply, refusal cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import git
from devagent.workspace import GitError, ThreadWorkspace


@pytest.fixture
def ws(home: Path, repo: Path) -> ThreadWorkspace:
    workspace = ThreadWorkspace("ws1", home / "threads" / "ws1")
    workspace.create(repo)
    return workspace


def test_checkout_is_on_its_own_branch_and_the_users_repo_is_untouched(ws: ThreadWorkspace, repo: Path) -> None:
    assert (ws.work_dir / "README.md").read_text() == "# project\n"
    assert ws.git("rev-parse", "--abbrev-ref", "HEAD").strip() == "devagent/ws1"
    assert ws.base_commit == git(repo, "rev-parse", "HEAD").strip()
    (ws.work_dir / "new.txt").write_text("x\n")
    ws.commit_turn("add new.txt")
    assert git(repo, "status", "--porcelain") == ""
    assert "devagent/ws1" not in git(repo, "branch", "--all")
    # The repository itself lives outside the work tree (mounted read-only in the container).
    assert ws.git_dir.parent == ws.root and not any((ws.work_dir / ".git").iterdir())


def test_each_turn_is_a_commit_with_the_task_as_message(ws: ThreadWorkspace) -> None:
    assert ws.commit_turn("nothing changed") is None
    (ws.work_dir / "a.txt").write_text("1\n")
    first = ws.commit_turn("turn one: add a.txt")
    (ws.work_dir / "a.txt").write_text("2\n")
    second = ws.commit_turn("turn two: change a.txt")
    assert first and second and first != second
    assert ws.git("log", "--format=%s", "-2").split("\n")[:2] == ["turn two: change a.txt", "turn one: add a.txt"]
    assert "+2" in ws.diff() and "a.txt" in ws.diff(stat=True)


def test_snapshot_reports_files_changed_between_commands(ws: ThreadWorkspace) -> None:
    before = ws.snapshot()
    (ws.work_dir / "Makefile").write_text("test:\n\t@echo changed\n")
    (ws.work_dir / "b.txt").write_text("b\n")
    assert ws.changed_between(before, ws.snapshot()) == ["M Makefile", "A b.txt"]


def test_apply_merges_into_the_users_current_branch(ws: ThreadWorkspace, repo: Path) -> None:
    (ws.work_dir / "feature.txt").write_text("feature\n")
    ws.commit_turn("add feature")
    head = ws.apply_to(repo)
    assert (repo / "feature.txt").read_text() == "feature\n"
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert git(repo, "log", "-1", "--format=%an").strip() == "Test User"


def test_apply_refuses_a_dirty_checkout_and_changes_nothing(ws: ThreadWorkspace, repo: Path) -> None:
    (ws.work_dir / "feature.txt").write_text("feature\n")
    ws.commit_turn("add feature")
    (repo / "README.md").write_text("local edit\n")
    before = git(repo, "rev-parse", "HEAD")
    with pytest.raises(GitError, match="uncommitted changes"):
        ws.apply_to(repo)
    assert git(repo, "rev-parse", "HEAD") == before
    assert not (repo / "feature.txt").exists()
    assert (repo / "README.md").read_text() == "local edit\n"


def test_apply_refuses_a_conflict_and_leaves_the_checkout_clean(ws: ThreadWorkspace, repo: Path) -> None:
    (ws.work_dir / "README.md").write_text("thread version\n")
    ws.commit_turn("edit readme")
    (repo / "README.md").write_text("user version\n")
    git(repo, "commit", "-qam", "user edit")
    with pytest.raises(GitError, match="conflicts"):
        ws.apply_to(repo)
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "README.md").read_text() == "user version\n"


def test_discard_removes_the_checkout(ws: ThreadWorkspace) -> None:
    ws.discard()
    assert not ws.root.exists()
