"""Threads as a user handles them: short ids, the current repository's latest thread by default,
merge and checkout into the user's repository, undo, and a discard that never happens unasked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import git
from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")


def turn(cli, llm, task: str, *calls: dict, thread: str | None = None) -> str:
    llm.script(*[{"tool_calls": [c]} for c in calls], {"content": f"{task}: done"})
    args = ["--thread", thread] if thread else ["--base-url", llm.url, "--model", "stub"]
    result = cli("task", task, *args, "--no-input", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])["thread"]


def summary(stdout: str) -> dict:
    """The result of `task --json`: one JSON document, or the last line of a JSON Lines stream."""
    try:
        return json.loads(stdout)
    except ValueError:
        return json.loads(stdout.splitlines()[-1])


def write(path: str, content: str, call_id: str) -> dict:
    return tool_call("write_file", {"path": path, "content": content}, call_id)


def test_a_unique_prefix_or_nothing_names_the_thread(cli, llm, repo: Path) -> None:
    thread = turn(cli, llm, "first", write("a.txt", "a\n", "w1"))
    assert "a.txt" in cli("diff", thread[:3]).stdout
    latest = cli("diff")
    assert "a.txt" in latest.stdout
    assert f"thread {thread} (the most recent of {repo})" in latest.stderr
    assert cli("log", "zzzz").returncode == 1


def test_discard_without_a_terminal_needs_yes(cli, llm) -> None:
    thread = turn(cli, llm, "first", write("a.txt", "a\n", "w1"))
    refused = cli("discard", thread)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert [t["id"] for t in json.loads(cli("threads", "--json").stdout)] == [thread]
    assert cli("discard", thread, "--yes").returncode == 0
    assert json.loads(cli("threads", "--json").stdout) == []


def test_a_conflicting_apply_leaves_a_local_branch_and_a_second_apply_changes_nothing(cli, llm, repo: Path) -> None:
    thread = turn(cli, llm, "edit readme", write("README.md", "# from the thread\n", "w1"))
    (repo / "README.md").write_text("# from the user\n")
    git(repo, "commit", "-qam", "user edit")
    mine = git(repo, "rev-parse", "HEAD").strip()

    conflict = cli("apply", thread)
    assert conflict.returncode == 1
    assert f"git merge devagent/{thread}" in conflict.stderr
    assert git(repo, "rev-parse", "HEAD").strip() == mine and git(repo, "status", "--porcelain") == ""
    assert "from the thread" in git(repo, "show", f"devagent/{thread}:README.md")

    # Resolved by hand: the thread's work is in, and devagent sees that.
    git(repo, "merge", "-q", "-X", "theirs", f"devagent/{thread}", "-m", "merged by hand")
    again = cli("apply", thread)
    assert again.returncode == 0 and "already merged" in again.stdout
    assert git(repo, "rev-parse", "HEAD").strip() == git(repo, "rev-parse", "HEAD").strip()


def test_apply_then_apply_again_says_already_merged(cli, llm, repo: Path) -> None:
    thread = turn(cli, llm, "add notes", write("notes.txt", "n\n", "w1"))
    assert cli("apply", thread).returncode == 0
    head = git(repo, "rev-parse", "HEAD").strip()
    again = cli("apply", thread)
    assert again.returncode == 0 and "already merged" in again.stdout
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert json.loads(cli("threads", "--json").stdout)[0]["state"] == "merged"


def test_checkout_brings_the_branch_without_merging(cli, llm, repo: Path) -> None:
    thread = turn(cli, llm, "add notes", write("notes.txt", "n\n", "w1"))
    head = git(repo, "rev-parse", "HEAD").strip()
    out = cli("checkout", thread)
    assert out.returncode == 0, out.stderr
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert git(repo, "show", f"devagent/{thread}:notes.txt") == "n\n"


def test_undo_resets_the_last_turn_and_tells_the_model(cli, llm, home: Path) -> None:
    thread = turn(cli, llm, "first", write("one.txt", "1\n", "w1"))
    turn(cli, llm, "second", write("two.txt", "2\n", "w2"), thread=thread)
    work = home / "threads" / thread / "workspace"
    assert (work / "two.txt").exists()

    out = cli("undo", thread)
    assert out.returncode == 0, out.stderr
    assert "second" in out.stdout
    assert not (work / "two.txt").exists() and (work / "one.txt").read_text() == "1\n"
    assert any(e["event"] == "undone" for e in json.loads(cli("log", thread, "--json").stdout))

    turn(cli, llm, "third", thread=thread)
    told = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "user"]
    assert any("undid your last turn" in m and "second" in m for m in told)


def test_undo_is_refused_while_a_run_is_paused(cli, llm) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "true"}, "s1")]})
    paused = cli("task", "go", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert paused.returncode == 3
    thread = json.loads(paused.stdout.splitlines()[-1])["thread"]
    refused = cli("undo", thread)
    assert refused.returncode == 1 and "paused" in refused.stderr


@pytest.mark.parametrize("columns", [80, 120])
def test_threads_at_the_terminals_width_cuts_nothing_that_matters(cli, llm, home: Path, repo: Path,
                                                                  columns: int) -> None:
    from terminal_helpers import Terminal

    long_task = "rename the users table to accounts everywhere, " * 4
    thread = turn(cli, llm, long_task, write("a.txt", "a\n", "w1"))
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "true"}, "s1")]})
    paused = cli("task", "second thread", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    other = summary(paused.stdout)["thread"]
    # Each thread's own: the two turns may fall on either side of a minute.
    activity = {t["id"]: t["last_activity"][5:16] for t in json.loads(cli("threads", "--json").stdout)}

    for args in ((), ("--wide",)):
        term = Terminal(home, repo, "threads", *args, columns=columns)
        assert term.wait() == 0
        lines = term.lines()
        assert lines[0].split()[:6] == ["id", "state", "pending", "last", "activity", "task"]
        [row] = [line for line in lines if line.startswith(other)]
        assert row.split()[:5] == [other, "paused", "1", *activity[other].split()] and "second thread" in row
        [first] = [line for line in lines if line.startswith(thread)]
        assert first.split()[:5] == [thread, "done", "0", *activity[thread].split()]
        if not args:
            assert all(len(line) <= columns for line in lines)
            assert "branch" not in lines[0] and f"devagent/{thread}" not in term.text()
            # The task takes the rest of the line, shortened visibly, never wrapped onto another.
            assert len(lines) == 3 and "rename the users table" in first
            assert first.endswith("…") and len(first) >= columns - 2
        else:
            # The header may wrap at 80 columns with the wide columns; the branch and repo are there.
            assert "branch" in term.text() and f"devagent/{thread}" in term.text()
            assert "repo" in term.text() and (columns < 120 or str(repo) in term.text())


def _dirty(repo: Path) -> None:
    (repo / "README.md").write_text("# project, edited but not committed\n")
    (repo / "Makefile").unlink()
    (repo / "notes").mkdir()
    (repo / "notes" / "todo.txt").write_text("untracked notes\n")
    (repo / ".gitignore").write_text("secret.env\n")
    (repo / "secret.env").write_text("TOKEN=x\n")  # ignored: stays out either way


def test_a_new_thread_says_what_of_the_working_tree_it_leaves_out(cli, llm, repo: Path, home: Path) -> None:
    _dirty(repo)
    llm.script({"content": "looked"})
    result = cli("task", "look", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert result.returncode == 0, result.stderr
    thread = summary(result.stdout)["thread"]
    [line] = [line for line in result.stderr.splitlines() if "not in the thread" in line]
    assert line.startswith("2 modified and 2 untracked files") and "--include-uncommitted" in line
    work = home / "threads" / thread / "workspace"
    assert (work / "README.md").read_text() == "# project\n" and (work / "Makefile").exists()
    assert not (work / "notes").exists()


def test_include_uncommitted_starts_from_the_working_tree_as_a_first_commit(cli, llm, repo: Path, home: Path) -> None:
    _dirty(repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    llm.script({"tool_calls": [tool_call("read_file", {"path": "README.md"}, "r1")]}, {"content": "read it"})
    result = cli("task", "look", "--include-uncommitted", "--base-url", llm.url, "--model", "stub",
                 "--no-input", "--json")
    assert result.returncode == 0, result.stderr
    thread = summary(result.stdout)["thread"]
    assert "2 modified and 2 untracked files of your working tree are the thread's first commit" in result.stderr
    # The model read the edited README, not HEAD's.
    tool_outputs = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "tool"]
    assert any("edited but not committed" in str(out) for out in tool_outputs)
    branch = f"devagent/{thread}"
    commits = git(home / "threads" / thread / "workspace", "--git-dir", str(home / "threads" / thread / "git"),
                  "log", "--format=%s", f"{head}..{branch}").splitlines()
    assert commits[-1].startswith("Uncommitted work from")
    files = git(home / "threads" / thread / "workspace", "--git-dir", str(home / "threads" / thread / "git"),
                "show", "--name-status", "--format=", f"{branch}~{len(commits) - 1}").split("\n")
    assert sorted(f for f in files if f) == ["A\t.gitignore", "A\tnotes/todo.txt", "D\tMakefile", "M\tREADME.md"]
    # Ignored files (a .env with secrets) never enter the thread, not even its work tree.
    assert not (home / "threads" / thread / "workspace" / "secret.env").exists()
    # The user's checkout is untouched.
    assert git(repo, "rev-parse", "HEAD").strip() == head and (repo / "README.md").read_text().endswith("committed\n")
    assert "notes/todo.txt" in cli("diff", thread).stdout


def test_shell_has_a_named_user_the_hosts_term_and_a_banner(cli, llm, home: Path, repo: Path) -> None:
    thread = turn(cli, llm, "first", write("a.txt", "a\n", "w1"))
    import os
    import subprocess
    import sys

    env = {**os.environ, "DEVAGENT_HOME": str(home), "TERM": "screen-256color"}
    done = subprocess.run([sys.executable, "-m", "devagent", "shell", thread], cwd=repo, env=env, text=True,
                          input='whoami; id -un; echo "term=$TERM"; cat a.txt; echo "pg=${PGHOST:-none}"; '
                          'echo x 2>/dev/null >> /etc/passwd || echo "passwd=read-only"; exit 4\n',
                          capture_output=True, timeout=120)
    assert done.returncode == 4, done.stderr
    assert done.stdout.splitlines() == ["agent", "agent", "term=screen-256color", "a", "pg=none",
                                          "passwd=read-only"]
    [banner] = [line for line in done.stderr.splitlines() if line.strip()]
    assert banner.startswith(f"devagent shell: thread {thread}, container devagent-{thread}.")
    assert "not approved or logged; files you change are committed with the next turn" in banner
    assert "I have no name" not in done.stderr


def test_shell_on_a_postgres_thread_connects_with_plain_psql(cli, llm, home: Path, repo: Path) -> None:
    import os
    import subprocess
    import sys

    llm.script({"content": "nothing to do"})
    started = cli("task", "look", "--database", "postgres", "--base-url", llm.url, "--model", "stub",
                  "--no-input", "--json", timeout=240)
    assert started.returncode == 0, started.stderr
    thread = summary(started.stdout)["thread"]
    env = {**os.environ, "DEVAGENT_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "devagent", "shell", thread], cwd=repo, env=env, text=True,
                          input="psql -Atc 'select current_user, current_database(), 6*7'\n",
                          capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "devagent|devagent|42"


NESTED = ("mkdir -p vendor/lib && cd vendor/lib && git init -q && echo lib > lib.txt && git add lib.txt "
          "&& git -c user.name=a -c user.email=a@b commit -qm lib && cd ../.. && echo app > app.txt")


def test_a_repository_the_agent_made_inside_the_workspace_is_left_out_and_apply_works(cli, llm, repo: Path) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": NESTED}, "s1")]}, {"content": "done"})
    started = cli("task", "vendor a lib", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    thread = summary(started.stdout)["thread"]
    assert cli("approve", thread, "--all").returncode == 0
    done = cli("resume", thread)
    assert done.returncode == 0, done.stderr
    [notice] = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("vendor/lib")]
    assert "is a git repository inside the workspace: not committed" in notice

    applied = cli("apply", thread)
    assert applied.returncode == 0, applied.stderr
    assert (repo / "app.txt").read_text() == "app\n"
    assert "vendor" not in git(repo, "ls-tree", "-r", "--name-only", "HEAD")
    # A later turn still commits and applies.
    llm.script({"tool_calls": [write("more.txt", "m\n", "w2")]}, {"content": "done"})
    again = cli("task", "more", "--thread", thread, "--no-input", "--json")
    assert again.returncode == 0, again.stderr
    assert cli("apply", thread).returncode == 0 and (repo / "more.txt").exists()


def test_discard_on_a_terminal_asks_and_only_yes_deletes(cli, llm, home: Path, repo: Path) -> None:
    from terminal_helpers import Terminal

    thread = turn(cli, llm, "first", write("a.txt", "a\n", "w1"))
    term = Terminal(home, repo, "discard", thread[:4])
    term.expect(r"\[y/N\]")
    term.send("\r")  # Enter: the default is no
    assert term.wait() == 2
    assert (home / "threads" / thread).is_dir() and git(repo, "branch", "--list", f"devagent/{thread}") == ""
    assert [t["id"] for t in json.loads(cli("threads", "--json").stdout)] == [thread]

    term = Terminal(home, repo, "discard", thread[:4])
    term.expect(r"\[y/N\]")
    term.send("y\r")
    assert term.wait() == 0
    assert f"discarded thread {thread}" in term.text()
    assert not (home / "threads" / thread).exists() and json.loads(cli("threads", "--json").stdout) == []


def test_a_thread_stopped_by_a_model_api_error_says_why_under_its_row_at_80_columns(cli, home: Path, repo: Path) -> None:
    from terminal_helpers import Terminal

    dead = "http://127.0.0.1:9/v1"
    assert cli("task", "a task that fails", "--base-url", dead, "--model", "stub", "--no-input").returncode == 1
    [thread] = [t["id"] for t in json.loads(cli("threads", "--json").stdout)]
    term = Terminal(home, repo, "threads", columns=80)
    assert term.wait() == 0
    lines = term.lines()
    assert len(lines) == 3 and all(len(line) <= 80 for line in lines)
    assert lines[1].split()[:3] == [thread, "failed", "0"] and "a task that fails" in lines[1]
    assert lines[2].lstrip().startswith("model API error") and dead[:20] in lines[2]
