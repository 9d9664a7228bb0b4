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


# ---------------------------------------------------------------------------- the state an approval binds


def test_the_fingerprint_covers_content_mode_links_and_ignored_files_but_not_git(ws: ThreadWorkspace) -> None:
    import os

    work = ws.work_dir
    (work / ".gitignore").write_text(".env\n")
    (work / ".env").write_text("A=1\n")
    os.symlink("README.md", work / "link")
    seen = {ws.state().fingerprint}

    def changed(what) -> None:
        what()
        fingerprint = ws.state().fingerprint
        assert fingerprint not in seen
        seen.add(fingerprint)

    changed(lambda: (work / ".env").write_text("A=2\n"))  # an ignored file's content
    changed(lambda: os.chmod(work / "Makefile", 0o755))  # a mode
    changed(lambda: (os.unlink(work / "link"), os.symlink("Makefile", work / "link")))  # a link target
    changed(lambda: (work / "empty").mkdir())  # an empty directory
    changed(lambda: (work / "nested" / ".git").mkdir(parents=True))  # a nested repository
    before = ws.state().fingerprint
    (work / ".git" / "HEAD").write_text("ref: refs/heads/x\n")  # the thread's own .git mount point
    assert ws.state().fingerprint == before


def test_a_rewrite_within_the_same_second_is_never_hidden_by_the_stat_cache(ws: ThreadWorkspace) -> None:
    import os
    import time

    path = ws.work_dir / "Makefile"
    path.write_text("test:\n\t@echo aaaa\n")
    first = ws.state().fingerprint
    stat = os.stat(path)
    path.write_text("test:\n\t@echo bbbb\n")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime, set back
    assert ws.state().fingerprint != first
    time.sleep(1.1)
    cached = ws.state().fingerprint  # now from the stat cache
    path.write_text("test:\n\t@echo cccc\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert ws.state().fingerprint != cached  # ctime moved: hashed again


def test_changes_are_listed_with_ignored_files_marked_and_names_quoted(ws: ThreadWorkspace) -> None:
    import os

    before = ws.state()
    work = ws.work_dir
    (work / ".gitignore").write_text(".env\n")
    (work / ".env").write_text("A=1\n")
    (work / "node_modules" / "x").mkdir(parents=True)
    (work / "node_modules" / "x" / "index.js").write_text("1\n")
    (work / "Makefile").unlink()
    (work / "a\nM README.md").write_text("x\n")  # a name that would look like a second entry
    os.mkfifo(work / "fifo")
    changes, error = ws.list_changes(before, ws.state())
    assert error is None
    assert changes == ["A .env (ignored)", "A .gitignore", "D Makefile", 'A "a\\nM README.md"', "A fifo",
                       "A node_modules/x/index.js (ignored)"]
    assert [c.to_json() for c in changes][0] == {"status": "A", "path": ".env", "ignored": True}


def test_an_ignore_file_git_cannot_read_is_reported_not_waited_for(ws: ThreadWorkspace) -> None:
    import os

    before = ws.state()
    (ws.work_dir / "Makefile").write_text("changed\n")
    os.mkfifo(ws.work_dir / ".gitignore")
    changes, error = ws.list_changes(before, ws.state())
    assert changes == ["A .gitignore", "M Makefile"]  # still the whole list
    assert ".gitignore is not a regular file" in error


def test_environments_and_caches_stay_out_of_turn_commits(ws: ThreadWorkspace) -> None:
    work = ws.work_dir
    for rel in (".venv/bin/python", "node_modules/a/index.js", "src/__pycache__/m.cpython-311.pyc",
                ".pytest_cache/v", ".mypy_cache/x", "src/m.py"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text("x\n")
    commit = ws.commit_turn("turn")
    assert ws.git("ls-tree", "-r", "--name-only", commit).split() == ["Makefile", "README.md", "src/m.py"]


def test_the_diffstat_is_capped_and_a_big_turn_is_warned_about(ws: ThreadWorkspace) -> None:
    (ws.work_dir / "gen").mkdir()
    for i in range(30):
        (ws.work_dir / "gen" / f"f{i:02}.txt").write_text(f"{i}\n")
    commit = ws.commit_turn("many files")
    lines = ws.diffstat(commit).splitlines()
    assert len(lines) == 22 and lines[20] == " … and 10 more files"
    assert "30 files changed" in lines[21]
    assert ws.size_warning(commit) is None
    warning = ws.size_warning(commit, max_files=29)
    assert warning.startswith("warning: this turn added 30 files")
    assert ws.size_warning(commit, max_bytes=50) is not None  # 30 files of 2-3 bytes: 80 bytes


def test_a_fifo_where_git_reads_a_file_fails_the_commit_at_once(ws: ThreadWorkspace) -> None:
    import os
    import time

    (ws.work_dir / "sub").mkdir()
    os.mkfifo(ws.work_dir / "sub" / ".gitattributes")
    started = time.monotonic()
    with pytest.raises(GitError, match="sub/.gitattributes in the checkout is a FIFO"):
        ws.commit_turn("turn")
    assert time.monotonic() - started < 30
