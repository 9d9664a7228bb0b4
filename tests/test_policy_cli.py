"""Command rules end to end: the real CLI, the OpenAI-compatible stub, real containers.

Rules come from the user's checkout (`.devagent/policy.toml`) and from $XDG_CONFIG_HOME; a
command they allow runs without a pause, a forbidden one never runs and the model is told why.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llm_stub import tool_call

MAKE_TEST_RULE = """# the team's rules
[[rule]]
decision = "allow"
pattern = ["make", "test"]
reason = "the test suite only reads the tree"
examples = ["make test"]
not_examples = ["make test && rm -rf x"]

[[rule]]
decision = "forbid"
pattern = ["rm"]
reason = "deleting files is done by hand in this project"
examples = ["rm -rf build"]
"""


@pytest.fixture
def xdg(tmp_path: Path) -> Path:
    return tmp_path / "xdg"


@pytest.fixture
def run(cli, xdg: Path):
    """The CLI with its own (empty unless written) user config dir."""

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, env={"XDG_CONFIG_HOME": str(xdg)})

    return call


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def start(run, llm, task: str = "run the tests", *extra: str):
    result = run("task", task, "--base-url", llm.url, "--model", "stub", "--no-input", "--json", *extra)
    return result, (json.loads(result.stdout.splitlines()[-1]) if result.stdout.strip() else None)


@pytest.mark.usefixtures("sandbox_image")
def test_allowed_commands_run_without_a_pause_and_the_audit_names_the_rule(run, llm, repo: Path, xdg: Path) -> None:
    rules = write(repo / ".devagent" / "policy.toml", MAKE_TEST_RULE)
    user = write(xdg / "devagent" / "policy.toml", 'preset = "read-only"\n')
    llm.script(
        {"tool_calls": [tool_call("run_shell", {"command": "make test"}, "s1"),
                        tool_call("run_shell", {"command": "ls -la | wc -l"}, "s2")]},
        {"content": "The tests pass."},
    )
    result, data = start(run, llm)
    assert result.returncode == 0, result.stderr
    assert data["status"] == "done" and data["pending"] == []
    outputs = llm.tool_outputs()
    assert "tests pass" in outputs["s1"] and "exit code 0" in outputs["s2"]
    assert "approved by rule .devagent/policy.toml:2: make test" in result.stderr
    assert "approved by rule preset:read-only:9: ls -la | wc -l" in result.stderr

    log = json.loads(run("log", data["thread"], "--json").stdout)
    approved = {e["call_id"]: e for e in log if e["event"] == "approved"}
    assert approved["s1"]["actor"] == "rule .devagent/policy.toml:2"
    [record] = approved["s1"]["detail"]["rules"]
    assert record["file"] == str(rules.resolve()) or record["file"] == str(rules)
    assert record["file_sha256"] == hashlib.sha256(rules.read_bytes()).hexdigest()
    assert approved["s2"]["actor"].startswith("rule preset:read-only:")
    [files] = [e["detail"]["files"] for e in log if e["event"] == "rules"]
    assert {(Path(f["path"]).name, f["scope"], f["sha256"]) for f in files} >= {
        ("policy.toml", "project", hashlib.sha256(rules.read_bytes()).hexdigest()),
        ("policy.toml", "user", hashlib.sha256(user.read_bytes()).hexdigest()),
    }
    assert [e["event"] for e in log if e["call_id"] == "s1"] == ["proposed", "approved", "executing", "executed"]


@pytest.mark.usefixtures("sandbox_image")
def test_a_chain_past_an_allowed_prefix_pauses_and_rules_are_read_again_on_resume(run, llm, repo: Path) -> None:
    write(repo / ".devagent" / "policy.toml", MAKE_TEST_RULE.split("\n\n[[rule]]\ndecision = \"forbid\"")[0])
    llm.script(
        {"tool_calls": [tool_call("run_shell", {"command": "make test && rm -rf x"}, "s1")]},
        {"tool_calls": [tool_call("run_shell", {"command": "make test && echo all good"}, "s2")]},
        {"content": "finished"},
    )
    paused, data = start(run, llm)
    assert paused.returncode == 3, paused.stderr
    thread = data["thread"]
    assert [p["command"] for p in data["pending"]] == ["make test && rm -rf x"]
    assert run("reject", thread, "s1", "--reason", "no deleting").returncode == 0

    again = run("resume", thread, "--no-input", "--json")
    assert again.returncode == 3, again.stderr  # `echo` is not allowed yet
    assert [p["call_id"] for p in json.loads(again.stdout.splitlines()[-1])["pending"]] == ["s2"]

    # The user widens the rules; the next resume reads them again and approves the waiting call.
    assert run("rules", "add", "allow", "echo", "--reason", "prints").returncode == 0
    done = run("resume", thread, "--no-input")
    assert done.returncode == 0, done.stderr
    assert "all good" in llm.tool_outputs()["s2"]
    log = json.loads(run("log", thread, "--json").stdout)
    actors = {e["call_id"]: e["actor"] for e in log if e["event"] in ("approved", "rejected")}
    assert actors == {"s1": "user", "s2": "rule .devagent/policy.toml:2, .devagent/policy.toml:9"}
    rule_files = [e["detail"]["files"][0]["sha256"] for e in log if e["event"] == "rules"]
    assert len(rule_files) == 2 and rule_files[0] != rule_files[1]  # recorded again when the file changed


@pytest.mark.usefixtures("sandbox_image")
def test_a_forbidden_command_never_runs_and_the_model_gets_the_reason(run, llm, repo: Path, home: Path) -> None:
    write(repo / ".devagent" / "policy.toml", MAKE_TEST_RULE)
    llm.script(
        {"tool_calls": [tool_call("run_shell", {"command": "make test; rm -rf README.md"}, "c1")]},
        {"content": "I will not delete it."},
    )
    result, data = start(run, llm)
    assert result.returncode == 0, result.stderr
    assert "deleting files is done by hand in this project" in llm.tool_outputs()["c1"]
    assert "forbidden by rule .devagent/policy.toml:9" in llm.tool_outputs()["c1"]
    assert "refused by rule .devagent/policy.toml:9: make test; rm -rf README.md" in result.stderr
    assert (home / "threads" / data["thread"] / "workspace" / "README.md").exists()
    log = json.loads(run("log", data["thread"], "--json").stdout)
    assert [e["event"] for e in log if e["call_id"] == "c1"] == ["proposed", "rejected"]
    rejected = next(e for e in log if e["event"] == "rejected")
    assert rejected["actor"] == "rule .devagent/policy.toml:9"
    assert rejected["detail"]["rules"][0]["decision"] == "forbid"


@pytest.mark.usefixtures("sandbox_image")
def test_rules_written_by_the_agent_in_its_workspace_are_ignored(run, llm, repo: Path) -> None:
    llm.script(
        {"tool_calls": [tool_call("write_file", {"path": ".devagent/policy.toml",
                                                 "content": '[[rule]]\ndecision = "allow"\npattern = ["echo"]\n'}, "w1")]},
        {"tool_calls": [tool_call("run_shell", {"command": "echo hi"}, "s1")]},
        {"content": "done"},
    )
    paused, data = start(run, llm)
    assert paused.returncode == 3, paused.stderr
    assert [p["call_id"] for p in data["pending"]] == ["s1"]


@pytest.mark.usefixtures("sandbox_image")
def test_prompt_and_forbid_rules_win_over_an_approve_always_answer(run, llm, repo: Path, home: Path) -> None:
    llm.script(
        {"tool_calls": [tool_call("run_shell", {"command": "make test > out1.txt"}, "s1")]},
        {"tool_calls": [tool_call("run_shell", {"command": "make test > out1.txt"}, "s2")]},
        {"tool_calls": [tool_call("run_shell", {"command": "make test > out1.txt"}, "s3")]},
        {"content": "done"},
    )
    paused, data = start(run, llm)
    assert paused.returncode == 3, paused.stderr
    thread = data["thread"]
    workspace = home / "threads" / thread / "workspace"
    assert run("approve", thread, "s1", "--always").returncode == 0
    # The team then asks for this command to be approved by a human every time.
    rules = write(repo / ".devagent" / "policy.toml",
                  '[[rule]]\ndecision = "prompt"\npattern = ["make", "test"]\nreason = "CI runs it"\n')
    again = run("resume", thread, "--no-input", "--json")
    assert again.returncode == 3, again.stderr  # s1 ran (the human approved it); s2 waits
    assert (workspace / "out1.txt").read_text() == "tests pass\n"
    assert [p["call_id"] for p in json.loads(again.stdout.splitlines()[-1])["pending"]] == ["s2"]
    assert "not covered by your 'always' rule: call s2 is asked every time by rule .devagent/policy.toml:1" in again.stderr

    assert run("approve", thread, "s2").returncode == 0
    # A forbid rule refuses the next identical call, 'always' answer or not: nothing runs.
    rules.write_text('[[rule]]\ndecision = "forbid"\npattern = ["make", "test"]\nreason = "CI runs it"\n')
    done = run("resume", thread, "--no-input")
    assert done.returncode == 0, done.stderr
    assert "refused by rule .devagent/policy.toml:1: make test > out1.txt" in done.stdout + done.stderr
    assert "forbidden by rule .devagent/policy.toml:1" in llm.tool_outputs()["s3"]
    assert "CI runs it" in llm.tool_outputs()["s3"]
    log = json.loads(run("log", thread, "--json").stdout)
    actors = {e["call_id"]: e["actor"] for e in log if e["event"] in ("approved", "rejected")}
    assert actors == {"s1": "user", "s2": "user", "s3": "rule .devagent/policy.toml:1"}
    assert len([e for e in log if e["event"] == "executed"]) == 2


@pytest.mark.usefixtures("sandbox_image")
def test_command_rules_never_cover_a_migration(run, llm, repo: Path) -> None:
    # Rules as wide as a user could write them for databases and migration tools.
    write(repo / ".devagent" / "policy.toml", "".join(
        f'[[rule]]\ndecision = "allow"\npattern = ["{word}"]\n\n'
        for word in ("run_migration", "alembic", "sqlite3", "psql", "echo")))
    llm.script(
        {"tool_calls": [tool_call("run_migration", {"sql": "CREATE TABLE users (id integer, note text);"}, "m1"),
                        tool_call("run_shell", {"command": "alembic upgrade head"}, "s1"),
                        tool_call("run_shell", {"command": "echo ok"}, "s2")]},
        {"tool_calls": [tool_call("run_migration", {"sql": "ALTER TABLE users DROP COLUMN note;"}, "m2")]},
        {"content": "done"},
    )
    paused, data = start(run, llm, "migrate", "--database", "sqlite")
    assert paused.returncode == 3, paused.stderr
    thread = data["thread"]
    # The migration and the migration tool wait for a human; the plain echo was allowed.
    assert sorted(p["call_id"] for p in data["pending"]) == ["m1", "s1"]
    assert "approved by rule .devagent/policy.toml:17: echo ok" in paused.stderr
    assert run("approve", thread, "m1").returncode == 0
    assert run("reject", thread, "s1", "--reason", "not now").returncode == 0
    again = run("resume", thread, "--no-input", "--json")
    assert again.returncode == 3, again.stderr
    [pending] = json.loads(again.stdout.splitlines()[-1])["pending"]
    assert pending["call_id"] == "m2"
    # Destructive SQL keeps its typed confirmation: --all leaves it pending, exit 3.
    approved = run("approve", thread, "--all")
    assert approved.returncode == 3 and "--confirm users.note" in approved.stdout, approved.stdout
    log = json.loads(run("log", thread, "--json").stdout)
    actors = {e["call_id"]: e["actor"] for e in log if e["event"] in ("approved", "rejected")}
    assert actors == {"m1": "user", "s1": "user", "s2": "rule .devagent/policy.toml:17"}


def test_a_rules_file_with_a_failing_example_stops_task_before_anything_starts(run, llm, repo: Path) -> None:
    write(repo / ".devagent" / "policy.toml",
          '[[rule]]\ndecision = "allow"\npattern = ["make", "test"]\nexamples = ["make check"]\n')
    result, _data = start(run, llm)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: .devagent/policy.toml:4: example 'make check' does not match"), lines[0]
    assert llm.requests == []
    assert json.loads(run("threads", "--json").stdout) == []


def test_rules_list_check_add_rm(run, repo: Path, xdg: Path) -> None:
    empty = run("rules")
    assert empty.returncode == 0 and "every command asks" in empty.stdout
    assert run("rules", "check", "pytest -q").stdout.startswith("prompt")

    assert run("rules", "add", "allow", "pytest").returncode == 0
    assert run("rules", "add", "forbid", "rm -rf", "--reason", "no recursive deletes").returncode == 0
    assert run("rules", "add", "allow", "ls", "--user").returncode == 0
    assert (xdg / "devagent" / "policy.toml").exists()
    listed = json.loads(run("rules", "--json").stdout)
    assert [(r["decision"], r["pattern"], r["where"]) for r in listed["rules"]] == [
        ("allow", ["ls"], f"{xdg}/devagent/policy.toml:3"),
        ("allow", ["pytest"], ".devagent/policy.toml:3"),
        ("forbid", ["rm", "-rf"], ".devagent/policy.toml:7"),
    ]
    human = run("rules").stdout
    assert ".devagent/policy.toml:7" in human and "no recursive deletes" in human

    check = json.loads(run("rules", "check", "pytest -q && ls | rm -rf x", "--json").stdout)
    assert check["decision"] == "forbid"
    assert [c["argv"] for c in check["commands"]] == [["pytest", "-q"], ["ls"], ["rm", "-rf", "x"]]
    assert [c["allowed_by"] for c in check["commands"]][:2] == [".devagent/policy.toml:3", f"{xdg}/devagent/policy.toml:3"]
    assert check["matched"][0]["reason"] == "no recursive deletes"
    text = run("rules", "check", "pytest $(id)").stdout
    assert text.startswith("prompt") and "command substitution" in text
    assert "[a] on the approval screen offers no rule: no rule can cover it" in text
    offer = json.loads(run("rules", "check", "make test -j2", "--json").stdout)
    assert (offer["decision"], offer["offer"], offer["offer_note"]) == ("prompt", ["allow `make test …`"], None)
    assert run("rules", "check", "pytest -x").stdout.startswith("allow")

    forbid_id = next(r["id"] for r in listed["rules"] if r["decision"] == "forbid")
    removed = run("rules", "rm", forbid_id)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(run("rules", "check", "rm -rf x", "--json").stdout)["decision"] == "prompt"
    missing = run("rules", "rm", "nope")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no rule 'nope' (see `devagent rules`)"
    bad = run("rules", "add", "allow", "ls && rm x")
    assert bad.returncode == 1 and "one plain command" in bad.stderr


def test_rules_check_shows_what_a_wrapper_runs_and_how_that_is_decided(run, repo: Path, xdg: Path) -> None:
    write(xdg / "devagent" / "policy.toml", '[[rule]]\ndecision = "allow"\npattern = ["timeout"]\n\n'
          '[[rule]]\ndecision = "allow"\npattern = ["pytest"]\n')
    rules = f"{xdg}/devagent/policy.toml"
    held = run("rules", "check", "timeout -k 1 5 rm -rf x").stdout.splitlines()
    assert held[0] == f"prompt: `timeout -k 1 5 rm -rf x`: {rules}:1 (timeout …) covers the wrapper only; " \
                      "it runs `rm -rf x`: no allow rule matches"
    assert held[1:7] == ["  1. timeout -k 1 5 rm -rf x", '     argv "timeout" "-k" "1" "5" "rm" "-rf" "x"',
                         f"     {rules}:1 (timeout …) covers the wrapper only", "     runs rm -rf x",
                         '       argv "rm" "-rf" "x"', "       no allow rule matches"]
    allowed = json.loads(run("rules", "check", "timeout 60 pytest -q", "--json").stdout)
    assert allowed["decision"] == "allow"
    wrapped = allowed["commands"][0]["wrapped"]
    assert (wrapped["argv"], wrapped["allowed_by"]) == (["pytest", "-q"], f"{rules}:5")


def test_rules_list_shows_the_preset_with_its_examples(run, xdg: Path) -> None:
    write(xdg / "devagent" / "policy.toml", 'preset = "read-only"\n')
    listed = run("rules")
    assert "presets: read-only" in listed.stdout
    assert "find . -exec rm {} ;" in listed.stdout  # a not_example, shown
    data = json.loads(run("rules", "--json").stdout)
    assert data["presets"] == ["read-only"] and all(r["examples"] for r in data["rules"])


def test_rules_commands_import_neither_the_agent_sdk_nor_openai_nor_docker(repo: Path, xdg: Path, home: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(xdg), "DEVAGENT_HOME": str(home)}
    for args in (["rules"], ["rules", "check", "ls -la"]):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "devagent", *args], cwd=repo, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
        assert not imported & {"agents", "openai", "docker", "git"}, imported & {"agents", "openai", "docker", "git"}


@pytest.mark.usefixtures("sandbox_image")
def test_a_on_the_screen_offers_the_rule_that_covers_the_command_and_saves_it_where_asked(
        llm, repo: Path, home: Path, xdg: Path, cli) -> None:
    from terminal_helpers import LEGEND, Terminal

    llm.script(
        {"tool_calls": [tool_call("run_shell", {"command": "make test"}, "s1")]},
        {"tool_calls": [tool_call("run_shell", {"command": "make test -s"}, "s2")]},
        {"tool_calls": [tool_call("run_shell", {"command": "cat README.md"}, "s3")]},
        {"tool_calls": [tool_call("run_shell", {"command": "cat Makefile"}, "s4")]},
        {"tool_calls": [tool_call("run_shell", {"command": "ls | sh"}, "s5")]},
        {"content": "all done"},
    )
    term = Terminal(home, repo, "task", "do it", "--base-url", llm.url, "--model", "stub",
                    env={"XDG_CONFIG_HOME": str(xdg)})
    try:
        term.expect(LEGEND)
        term.send("a")
        term.expect(r"back(?:\x1b\[[0-9;]*m)* › ")
        assert "always: allow `make test …`" in term.text()
        assert "save it for this thread, this project (.devagent/policy.toml) or me (" in term.text().replace("\n↪ ", " ").replace("\n", " ")
        assert re.search(r"t\]? this thread .*p\]? this project .*u\]? me .*b\]? back", term.lines()[-1])
        term.send("p")
        # The next `make test …` is approved by the saved project rule, with no screen.
        term.expect("approved by rule .devagent/policy.toml:3: make test -s")
        term.expect(LEGEND)
        term.send("a")
        term.expect(r"back(?:\x1b\[[0-9;]*m)* › ")
        assert "always: allow `cat …`" in term.text()
        term.send("u")
        # A pipe into a shell: no rule is offered, and the screen says why; `a` is no key here.
        term.expect(LEGEND)
        assert "no [a] always here: no rule is offered for `sh`: sh runs whatever it is given" in term.text()
        assert "[a]" not in term.lines()[-1]
        term.send("n")
        term.expect("reason")
        term.send("no\r")
        term.expect("all done")
        assert term.wait() == 0
    finally:
        term.close()
    project = (repo / ".devagent" / "policy.toml").read_text()
    assert 'pattern = ["make", "test"]' in project and 'examples = ["make test"]' in project
    user = (xdg / "devagent" / "policy.toml").read_text()
    assert 'pattern = ["cat"]' in user and 'examples = ["cat README.md"]' in user
    thread = [p.name for p in (home / "threads").iterdir()][0]
    log = json.loads(cli("log", thread, "--json").stdout)
    actors = {e["call_id"]: e["actor"] for e in log if e["event"] in ("approved", "rejected")}
    assert actors["s1"] == "user" and actors["s2"] == "rule .devagent/policy.toml:3"
    assert actors["s4"] == f"rule {xdg}/devagent/policy.toml:3" and actors["s5"] == "user"
    [s1] = [e for e in log if e["event"] == "approved" and e["call_id"] == "s1"]
    assert s1["detail"]["rules_saved"][0]["scope"] == "project"
    assert [e["call_id"] for e in log if e["event"] == "executed"] == ["s1", "s2", "s3", "s4"]


@pytest.mark.usefixtures("sandbox_image")
def test_a_threads_own_rules_are_listed_checked_and_removed_with_thread(run, llm, home: Path) -> None:
    """The rules `a` saved "for this thread" can be seen and revoked like any other."""
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "pytest -q"}, "s1")]}, {"content": "done"})
    paused, summary = start(run, llm)
    assert paused.returncode == 3, paused.stderr
    thread = summary["thread"]
    write(home / "threads" / thread / "policy.toml", '[[rule]]\ndecision = "allow"\npattern = ["pytest"]\n')
    assert json.loads(run("rules", "--json").stdout)["rules"] == []  # without --thread: not that thread's
    listed = run("rules", "--thread", thread[:4])
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"thread\s+\S+/threads/" + thread + r"/policy.toml\s+sha256", listed.stdout)
    [rule] = json.loads(run("rules", "--thread", thread, "--json").stdout)["rules"]
    assert (rule["decision"], rule["pattern"], rule["scope"]) == ("allow", ["pytest"], "thread")
    assert json.loads(run("rules", "check", "pytest -q", "--thread", thread, "--json").stdout)["decision"] == "allow"
    assert json.loads(run("rules", "check", "pytest -q", "--json").stdout)["decision"] == "prompt"
    removed = run("rules", "rm", rule["id"], "--thread", thread)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(run("rules", "check", "pytest -q", "--thread", thread, "--json").stdout)["decision"] == "prompt"
