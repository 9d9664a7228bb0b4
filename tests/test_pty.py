"""The interactive approval in a real pseudo-terminal: one key answers, typeahead never does."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from llm_stub import tool_call
from terminal_helpers import LEGEND, Terminal

pytestmark = pytest.mark.usefixtures("sandbox_image")

HIDDEN = "\x1b]0;HACKED\x07\x1b[8m"  # retitle the terminal, then conceal what follows


def task(home: Path, repo: Path, llm, *extra: str, columns: int = 80) -> Terminal:
    return Terminal(home, repo, "task", "do it", "--base-url", llm.url, "--model", "stub", *extra, columns=columns)


def thread_of(home: Path) -> str:
    [thread] = [p.name for p in (home / "threads").iterdir()]
    return thread


def workspace(home: Path) -> Path:
    return home / "threads" / thread_of(home) / "workspace"


def test_escaped_command_is_shown_and_n_means_it_never_runs(home: Path, repo: Path, llm) -> None:
    command = f"echo safe{HIDDEN} && touch ran.txt"
    llm.script({"tool_calls": [tool_call("run_shell", {"command": command}, "s1")]}, {"content": "understood"})
    term = task(home, repo, llm, columns=200)
    term.expect(LEGEND)
    screen = term.text()
    assert "⟪U+001B ESC⟫]0;HACKED⟪U+0007 BEL⟫⟪U+001B ESC⟫[8m" in screen
    assert "\x1b]0;HACKED" not in term.output and "\x1b[8m" not in term.output
    assert "touch ran.txt" in screen
    assert "hidden or control characters" in screen
    term.send("n")
    term.expect("reason")
    term.send("do not touch files\r")
    assert term.wait() == 0
    assert not (workspace(home) / "ran.txt").exists()
    assert "do not touch files" in llm.tool_outputs()["s1"]


def test_y_runs_exactly_the_shown_command_and_streams_its_output(home: Path, repo: Path, llm) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "echo streamed-$((6*7))"}, "s1")]},
               {"content": "all good"})
    term = task(home, repo, llm)
    term.expect(LEGEND)
    assert "echo streamed-$((6*7))" in term.text()
    term.send("y")  # one key, no Enter
    term.expect("streamed-42")
    term.expect("all good")
    assert term.wait() == 0
    # The result line names the command it belongs to.
    assert any(line.startswith("  ⎿ echo streamed-$((6*7)) → [exit code 0") for line in term.lines()), term.text()


def test_a_one_line_command_takes_at_most_six_lines_at_80_columns(home: Path, repo: Path, llm) -> None:
    llm.script({"tool_calls": [tool_call("write_file", {"path": "Makefile", "content": "test:\n\t@echo ok\n"}, "w1")]},
               {"tool_calls": [tool_call("run_shell", {"command": "make test"}, "s1")]},
               {"content": "done"})
    term = task(home, repo, llm, columns=80)
    term.expect(LEGEND)
    lines = term.lines()
    top = next(i for i, line in enumerate(lines) if line.startswith("╭─ run_shell"))
    screen = lines[top:]
    assert len(screen) <= 6, "\n".join(screen)
    assert screen[1].split() == ["│", "make", "test", "│"] and len(screen[1]) == 80
    assert "timeout 300s" in term.text() and "1 file changed since the last command" in term.text()
    assert all(len(line) <= 80 for line in screen)
    assert screen[-1].startswith("[y] approve  [n] reject  [a] always  [d] diff  [m] more  [s] stop")
    # m: the full metadata; d: the diff of what changed since the last command.
    term.send("m")
    term.expect(LEGEND)
    text = term.text()
    sha = __import__("hashlib").sha256(b"make test").hexdigest()
    assert sha in text.replace("\n", "") and "s1" in text and '{"command": "make test"}' in text
    assert "M Makefile" in text
    term.send("d")
    term.expect(LEGEND)
    assert "+→      @echo ok" in term.text() and "U+0009" not in term.text()
    term.send("y")
    assert term.wait() == 0


def test_keys_typed_before_the_screen_appears_are_ignored(home: Path, repo: Path, llm, cli) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "touch ran.txt"}, "s1")]}, {"content": "ok"})
    term = task(home, repo, llm)
    # A user types ahead during the start-up: "always" + Enter, "yes" + Enter.
    term.send("a\r")
    term.expect("on branch devagent/")
    term.send("a\ry\ryes\r")
    term.expect(LEGEND)
    time.sleep(2)  # had any of those keys answered, the command would be running by now
    thread = thread_of(home)
    log = json.loads(cli("log", thread, "--json").stdout)
    assert not [e for e in log if e["event"] in ("approved", "executing", "executed")], log
    assert not (workspace(home) / "ran.txt").exists()
    # Enter alone answers nothing either.
    term.send("\r\r")
    time.sleep(1)
    assert not (workspace(home) / "ran.txt").exists()
    term.send("n")
    term.expect("reason")
    term.send("\r")
    assert term.wait() == 0
    assert not (workspace(home) / "ran.txt").exists()
    assert json.loads(cli("pending", thread, "--json").stdout) == []


def test_s_rejects_and_ends_the_turn_with_its_work_committed(home: Path, repo: Path, llm, cli) -> None:
    llm.script({"tool_calls": [tool_call("write_file", {"path": "notes.txt", "content": "kept\n"}, "w1")]},
               {"tool_calls": [tool_call("run_shell", {"command": "echo first > first.txt"}, "s1"),
                               tool_call("run_shell", {"command": "touch second.txt"}, "s2"),
                               tool_call("run_shell", {"command": "touch third.txt"}, "s3")]},
               {"content": "this reply is never asked for"})
    term = task(home, repo, llm)
    term.expect(LEGEND)
    assert "run_shell · 1 of 3" in term.text()
    term.send("y")
    term.expect(LEGEND)
    assert "run_shell · 2 of 3" in term.text()
    term.send("s")
    assert term.wait() == 0
    assert re.search(r"thread [0-9a-f]{8} stopped: 1 command run", term.text())
    work = workspace(home)
    assert (work / "first.txt").exists()  # approved before the stop: it ran
    assert not (work / "second.txt").exists() and not (work / "third.txt").exists()
    assert len(llm.requests) == 2 and llm.steps, "the model was asked again after the stop"
    thread = thread_of(home)
    [info] = [t for t in json.loads(cli("threads", "--json").stdout) if t["id"] == thread]
    assert info["state"] == "done" and info["pending"] == 0
    assert "notes.txt" in cli("diff", thread).stdout  # the turn's work is committed
    # The thread takes a new task; the model is told the calls were stopped.
    llm.steps.clear()
    llm.script({"content": "ready for the next task"})
    again = cli("task", "next", "--thread", thread, "--base-url", llm.url, "--model", "stub", "--no-input")
    assert again.returncode == 0, again.stderr
    messages = llm.requests[-1]["messages"]
    told = [m["content"] for m in messages if m.get("role") == "tool" and m.get("tool_call_id") in ("s2", "s3")]
    assert len(told) == 2 and all("stopped this turn" in str(t) for t in told), messages


def test_ctrl_c_at_the_prompt_runs_nothing_and_keeps_the_run(home: Path, repo: Path, llm, cli) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "touch ran.txt"}, "s1")]}, {"content": "ok"})
    term = task(home, repo, llm)
    term.expect(LEGEND)
    term.child.sendintr()
    assert term.wait() == 130
    assert not (workspace(home) / "ran.txt").exists()
    pending = json.loads(cli("pending", thread_of(home), "--json").stdout)
    assert [p["call_id"] for p in pending] == ["s1"]


def test_shell_opens_the_threads_container_for_the_user(home: Path, repo: Path, llm, cli) -> None:
    llm.script({"tool_calls": [tool_call("write_file", {"path": "made-by-agent.txt", "content": "x\n"}, "w1")]},
               {"content": "done"})
    started = cli("task", "write a file", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    thread_id = json.loads(started.stdout.splitlines()[-1])["thread"]
    term = Terminal(home, repo, "shell", thread_id)
    term.send("ls; echo shell-$((40+2)); exit 7\r")
    term.expect("made-by-agent.txt")
    term.expect("shell-42")
    assert term.wait() == 7


def test_resume_on_a_terminal_asks_for_what_ci_left_pending(home: Path, repo: Path, llm, cli) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "echo later > later.txt"}, "s1")]},
               {"content": "finished later"})
    paused = cli("task", "do it later", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert paused.returncode == 3
    thread_id = json.loads(paused.stdout.splitlines()[-1])["thread"]
    term = Terminal(home, repo, "resume", thread_id)
    term.expect(LEGEND)
    assert "echo later > later.txt" in term.text()
    term.send("y")
    term.expect("finished later")
    assert term.wait() == 0
    assert (home / "threads" / thread_id / "workspace" / "later.txt").read_text() == "later\n"


def test_an_always_rule_prints_the_command_it_approved(home: Path, repo: Path, llm) -> None:
    llm.script({"tool_calls": [tool_call("run_shell", {"command": "echo again"}, "s1")]},
               {"tool_calls": [tool_call("run_shell", {"command": "echo again"}, "s2")]},
               {"content": "done twice"})
    term = task(home, repo, llm)
    term.expect(LEGEND)
    term.send("a")
    term.expect("save it for")
    term.send("t")  # this thread
    term.expect("done twice")
    assert term.wait() == 0
    text = term.text()
    rule = text.index("approved by your 'always' rule")
    assert "│ echo again" in text[rule:].split("\n", 2)[1], text


def test_destructive_sql_offers_no_always_and_a_typo_asks_again(home: Path, repo: Path, llm, cli) -> None:
    sql = "DROP TABLE IF EXISTS legacy;\n"  # a table that may hold data: only its typed name approves
    llm.script({"tool_calls": [tool_call("run_migration", {"sql": sql}, "m1")]}, {"content": "dropped"})
    term = task(home, repo, llm)
    term.expect(LEGEND)
    text = term.text()
    assert "no [a] always here: SQL that destroys data needs its name typed every time" in text
    assert "[a]" not in term.lines()[-1]
    term.send("a")  # not a key on this screen: nothing happens
    time.sleep(1)
    assert "no [a] always" in term.lines()[-2] and term.lines()[-1].endswith("›")
    term.send("y")
    term.expect("to approve: ")
    assert term.lines()[-1] == "this SQL destroys data; type legacy to approve:"
    term.send("legacyy\r")
    term.expect("more tries")
    term.expect("to approve: ")
    assert term.lines()[-2:] == ["that is not legacy; 2 more tries",
                                 "this SQL destroys data; type legacy to approve:"]
    term.send("legacy\r")
    term.expect("dropped")
    assert term.wait() == 0
    [row] = json.loads(cli("migrations", thread_of(home), "--json").stdout)
    assert (row["call_id"], row["result"]) == ("m1", "applied")
    log = json.loads(cli("log", thread_of(home), "--json").stdout)
    assert [e["detail"].get("always") for e in log if e["event"] == "approved"] == [False]


def test_a_status_line_says_what_is_going_on_only_on_a_terminal(home: Path, repo: Path, llm, cli) -> None:
    llm.script({"delay": 3, "tool_calls": [tool_call("run_shell", {"command": "sleep 3; echo finished"}, "s1")]},
               {"content": "all done"})
    term = task(home, repo, llm)
    term.expect("thinking")  # the model takes 3 s to answer
    term.expect(LEGEND)
    term.send("y")
    term.expect(r"running `sleep 3; echo finished`")
    term.expect("finished")
    term.expect("all done")
    assert term.wait() == 0

    llm.script({"delay": 2, "content": "ok"})
    piped = cli("task", "again", "--base-url", llm.url, "--model", "stub", "--no-input")
    assert piped.returncode == 0, piped.stderr
    assert "thinking" not in piped.stdout + piped.stderr


def approved_batch(cli, llm, commands: list[str], reply: str) -> str:
    """A thread paused on one batch of shell calls (s1, s2, ...), all approved from the command
    line: its id. The model replies `reply` once they ran."""
    llm.script({"tool_calls": [tool_call("run_shell", {"command": c}, f"s{n}") for n, c in enumerate(commands, 1)]},
               {"content": reply})
    paused = cli("task", "run them", "--base-url", llm.url, "--model", "stub", "--no-input")
    assert paused.returncode == 3, paused.stderr
    thread_id = re.search(r"thread ([0-9a-f]{8}) on branch", paused.stderr).group(1)
    assert cli("approve", thread_id, "--all").returncode == 0
    return thread_id


def test_result_lines_after_resume_in_a_new_process_name_their_commands(home: Path, repo: Path, llm, cli) -> None:
    thread_id = approved_batch(cli, llm, ["echo one", "echo two; exit 3"], "both ran")
    term = Terminal(home, repo, "resume", thread_id)  # a new process: it never saw the calls proposed
    term.expect("both ran")
    assert term.wait() == 0
    results = [line for line in term.lines() if line.startswith("  ⎿ ")]
    assert len(results) == 2, term.text()
    assert any(line.startswith("  ⎿ echo one → [exit code 0") for line in results), results
    assert any(line.startswith("  ⎿ echo two; exit 3 → [exit code 3") for line in results), results


def test_the_streamed_output_of_each_command_of_a_batch_is_headed_by_its_command(home: Path, repo: Path,
                                                                                    llm, cli) -> None:
    long = "printf 'first\\n'; printf 'no newline at the end' # " + "x" * 80
    thread_id = approved_batch(cli, llm, [long, "echo second", "true"], "all ran")
    term = Terminal(home, repo, "resume", thread_id, columns=60)
    term.expect("all ran")
    assert term.wait() == 0
    lines = [line.rstrip() for line in term.lines()]
    headings = [n for n, line in enumerate(lines) if line.startswith("▸ ")]
    assert len(headings) == 2, term.text()  # `true` says nothing: its result line is enough
    # The calls run one at a time, in an order the SDK picks.
    [first] = [n for n in headings if lines[n].startswith("▸ printf")]
    [second] = [n for n in headings if n != first]
    # Cut to one screen line, never wrapped onto the next.
    assert lines[first].startswith("▸ printf 'first\\n'; printf") and lines[first].endswith("…"), lines[first]
    assert len(lines[first]) <= 60 and lines[first + 1] == "first", lines[first:first + 3]
    assert lines[first + 2] == "no newline at the end", lines[first:first + 4]  # ended, not run into
    assert lines[second] == "▸ echo second" and lines[second + 1] == "second", lines[second:second + 3]
    results = sorted(line.split(" → ")[0] for line in lines if line.startswith("  ⎿ "))
    assert results[0] == "  ⎿ echo second" and results[1].startswith("  ⎿ printf 'first"), results
    # A result line too long for 60 columns puts the result under its command, not wrapped.
    at = next(n for n, line in enumerate(lines) if line.startswith("  ⎿ printf 'first"))
    assert lines[at + 1].startswith("    → [exit code 0;") and lines[at + 1].endswith("bytes of output]"), lines[at:]
    assert not [line for line in lines if line.startswith("↪")], term.text()
    assert results[2:] == ["  ⎿ true"], results


@pytest.mark.parametrize("columns", [40, 60, 80, 120])
def test_a_long_line_is_marked_as_a_continuation_on_a_real_terminal(home: Path, repo: Path, llm, cli,
                                                                     columns: int) -> None:
    command = "echo " + "x" * 150 + " && touch ran.txt"
    llm.script({"tool_calls": [tool_call("run_shell", {"command": command}, "s1")]})
    paused = cli("task", "long", "--base-url", llm.url, "--model", "stub", "--no-input")
    assert paused.returncode == 3, paused.stderr
    thread_id = re.search(r"thread ([0-9a-f]{8}) on branch", paused.stderr).group(1)
    term = Terminal(home, repo, "resume", thread_id, columns=columns)
    term.expect(LEGEND)
    lines = term.lines()
    top = next(i for i, line in enumerate(lines) if line.startswith("╭─ run_shell"))
    bottom = next(i for i in range(top, len(lines)) if lines[i].startswith("╰"))
    rows = [line[2:-2].rstrip() for line in lines[top + 1:bottom]]
    assert len(rows) > 1 and rows[0].startswith("echo xxx")
    assert all(row.startswith("↪ ") for row in rows[1:]), "\n".join(lines)
    assert "".join([rows[0]] + [row[2:] for row in rows[1:]]).replace(" ", "") == command.replace(" ", "")
    assert all(len(line) <= columns for line in lines)
    keys = lines[bottom + 1:]
    # The keys: whole entries only, on one row from 60 columns on, each row ending where it should.
    assert not any("↪" in row for row in keys), keys
    joined = " ".join(keys)
    for word in ("approve", "reject", "always", "diff", "more", "stop"):
        assert re.search(rf"\[?[a-z]\]? {word}\b", joined), keys
    if columns >= 60:
        assert re.fullmatch(r"\[?y\]? approve .*\[?s\]? stop ›", keys[-1]), keys
    term.child.sendintr()
    assert term.wait() == 130
    assert not (home / "threads" / thread_id / "workspace" / "ran.txt").exists()


def test_keys_typed_before_the_typed_confirmation_are_thrown_away(home: Path, repo: Path, llm, cli) -> None:
    llm.script({"tool_calls": [tool_call("run_migration", {"sql": "DROP TABLE IF EXISTS legacy;\n"}, "m1")]},
               {"content": "dropped"})
    term = task(home, repo, llm)
    term.expect(LEGEND)
    # "y", and the name typed ahead before its question is on the screen: only "y" counts.
    term.send("ylegacy\r")
    term.expect("to approve: ")
    time.sleep(2)  # had the typed-ahead name answered, the migration would be applied by now
    assert term.lines()[-1] == "this SQL destroys data; type legacy to approve:", term.text()
    assert json.loads(cli("migrations", thread_of(home), "--json").stdout) == []
    term.send("legacy\r")
    term.expect("dropped")
    assert term.wait() == 0
    [row] = json.loads(cli("migrations", thread_of(home), "--json").stdout)
    assert row["result"] == "applied"


def test_the_summary_and_its_hints_stay_on_short_lines_at_60_columns(home: Path, repo: Path, llm) -> None:
    llm.script({"tool_calls": [tool_call("write_file", {"path": "notes.txt", "content": "hi\n"}, "w1")]},
               {"content": "wrote it"})
    term = task(home, repo, llm, columns=60)
    term.expect("wrote it")
    assert term.wait() == 0
    tid = thread_of(home)
    lines = [line.rstrip() for line in term.lines()]
    assert not [line for line in lines if line.startswith("↪")], term.text()
    at = lines.index(f"thread {tid} done: 0 commands run")
    assert lines[at + 1].startswith("  committed ") and lines[at + 1].endswith(f" on devagent/{tid}"), lines[at:]
    at = lines.index(f"review: devagent diff {tid}")
    assert lines[at + 1] == f"merge: devagent apply {tid}", lines[at:]

    # Where there is room, each stays one line.
    llm.script({"tool_calls": [tool_call("write_file", {"path": "more.txt", "content": "hi\n"}, "w2")]},
               {"content": "wrote more"})
    wide = Terminal(home, repo, "task", "--thread", tid, "more", "--base-url", llm.url, "--model", "stub",
                    columns=120)
    wide.expect("wrote more")
    assert wide.wait() == 0
    text = wide.text()
    assert f"thread {tid} done: 0 commands run, committed " in text, text
    assert f"review: devagent diff {tid}   merge: devagent apply {tid}" in text, text


def test_the_paused_confirm_command_stays_whole_on_its_line_at_60_columns(home: Path, repo: Path, llm) -> None:
    llm.script({"tool_calls": [tool_call("run_migration", {"sql": "DROP TABLE IF EXISTS legacy_events;"}, "m1")]})
    term = task(home, repo, llm, "--no-input", columns=60)
    assert term.wait() == 3
    tid = thread_of(home)
    lines = [line.rstrip() for line in term.lines()]
    at = lines.index(f"  devagent approve {tid} m1 --confirm legacy_events")
    assert lines[at + 1] == "    (destroys data: legacy_events)", lines[at:]
