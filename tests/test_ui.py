"""The approval screen as rendered at a given width: compact, exact, wrapped lines marked."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from devagent.approvals import ApprovalRequest, MigrationRunner
from devagent.display import render_exact
from devagent.ui import approval_panel, legend

WIDTHS = [40, 60, 80, 120]
KEYS = [("y", "approve"), ("n", "reject"), ("a", "always"), ("d", "diff"), ("m", "more"), ("s", "stop")]


def render(request: ApprovalRequest, width: int, **kwargs) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    console.print(approval_panel(request, **kwargs))
    return console.file.getvalue().rstrip("\n").split("\n")


def shell(command: str, **kwargs) -> ApprovalRequest:
    return ApprovalRequest("3f9c2a1b", "call_8Hk2", "run_shell", "{}", "0" * 64, "pending", command=command,
                           timeout_s=300, **kwargs)


def box_rows(lines: list[str]) -> list[str]:
    """The rows inside the first box, without its frame."""
    start = next(i for i, line in enumerate(lines) if line.startswith("╭"))
    end = next(i for i, line in enumerate(lines) if line.startswith("╰"))
    return [line[2:-2] for line in lines[start + 1:end]]


def read_back(rows: list[str], numbered: bool) -> list[str]:
    """The command's lines as the screen shows them: a row starts a line only where it says so."""
    lines: list[str] = []
    for row in rows:
        if numbered:
            match = re.match(r"^ *(\d+) │ (.*)$", row) or re.match(r"^ *(↪) (.*)$", row)
            assert match, f"a row that is neither a numbered line nor a continuation: {row!r}"
            marker, text = match.groups()
            if marker == "↪":
                lines[-1] += text.rstrip()
            else:
                assert int(marker) == len(lines) + 1
                lines.append(text.rstrip())
        elif not lines:
            lines.append(row.rstrip())  # the first row starts the command
        else:
            assert row.startswith("↪ "), f"a second row not marked as a continuation: {row!r}"
            lines[-1] += row[2:].rstrip()
    return lines


def test_a_one_line_command_takes_at_most_six_lines_at_80_columns_with_the_keys() -> None:
    request = shell("make test", changed_files=["M Makefile"])
    lines = render(request, 80) + [legend(KEYS, 80).plain]
    assert len(lines) <= 6, "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert "│ make test" in text
    for part in ("/workspace", "network off", "timeout 300s", "1 file changed since the last command"):
        assert part in text
    assert re.search(r"sha256 [0-9a-f]{12}\b", text) and request.sha256 not in text  # the full one is under m
    assert "3f9c2a1b" not in text and "call_8Hk2" not in text


def test_more_shows_the_full_metadata() -> None:
    request = shell("make test", changed_files=["M Makefile", "A new file.txt"])
    text = "\n".join(render(request, 120, verbose=True))
    for part in (request.sha256, "3f9c2a1b", "call_8Hk2", "M Makefile", "A new file.txt", "0" * 64):
        assert part in text


@pytest.mark.parametrize("width", WIDTHS)
def test_the_legend_fits_on_one_line(width: int) -> None:
    if width >= 80:
        assert len(legend(KEYS + [("p", "preview SQL")], width).plain) <= width


pieces = st.lists(st.one_of(st.sampled_from(["x" * 70, "漢字" * 30, "😀" * 20, " " * 50, "\x1b[2K", "\r", "↪ ",
                                              "  2 │ rm -rf /", "\u202e", "\t"]),
                            st.text(alphabet="ab ;|\n", max_size=30)), min_size=1, max_size=8).map("".join)


@settings(max_examples=150, deadline=None)
@given(command=pieces, width=st.sampled_from(WIDTHS))
def test_a_wrapped_line_is_marked_as_a_continuation_at_every_width(command: str, width: int) -> None:
    """Reading the screen back, row by row, gives exactly the escaped command: a wrapped piece is
    always marked ↪, and only a numbered row starts a line of the command."""
    lines = render(shell(command), width)
    rows = box_rows(lines)
    numbered = "\n" in command
    shown = read_back(rows, numbered)
    expected = [line.rstrip() for line in render_exact(command).split("\n")]
    assert [line.replace(" ", "") for line in shown] == [line.replace(" ", "") for line in expected]


@pytest.mark.parametrize("width", WIDTHS)
def test_continuation_marks_at_each_width(width: int) -> None:
    command = "ls\nrm -rf /workspace/" + "x" * 200 + " && echo done"
    rows = box_rows(render(shell(command), width))
    assert rows[0].strip() == "1 │ ls"
    assert rows[1].strip().startswith("2 │ rm -rf /workspace/")
    assert all(row.strip().startswith("↪ ") for row in rows[2:]) and len(rows) > 2
    one_line = "echo " + "y" * 200
    rows = box_rows(render(shell(one_line), width))
    assert rows[0].startswith("echo yyy") and all(row.startswith("↪ ") for row in rows[1:]) and len(rows) > 1


SQL = ("-- add the audit table\n"
       "CREATE TABLE audit_events (id INTEGER PRIMARY KEY, message TEXT NOT NULL);\n"
       "DROP TABLE legacy_users; DELETE FROM sessions;\n")


@pytest.mark.parametrize("width", WIDTHS)
def test_sql_is_shown_once_with_each_statements_verdict(width: int) -> None:
    request = ApprovalRequest("t", "m1", "run_migration", "{}", "0" * 64, "pending", sql=SQL,
                              database="sqlite: devagent.db", sql_path="migrations/001.sql")
    lines = render(request, width)
    rows = box_rows(lines)
    sql_rows = [row for row in rows if re.match(r"^ *(\d+|↪) ", row)]
    nospace = [line.replace(" ", "") for line in read_back(sql_rows, numbered=True)]
    assert nospace == [line.replace(" ", "") for line in SQL.split("\n")]
    text = "\n".join(lines)
    assert text.count("CREATE TABLE audit_events") <= 1 and text.count("legacy_users;") == 1
    verdicts = [row for row in rows if row.startswith("#")]
    assert [v.split()[0] for v in verdicts] == ["#1", "#2", "#3"]
    assert "destroys data: drops table legacy_users" in " ".join(rows).replace("   ", "") or width < 60
    assert "destroys data" in verdicts[1] and "destroys data" in verdicts[2]
    assert "destroys" not in verdicts[0] and "✓" in verdicts[0]
    assert "file migrations/001.sql" in text.replace("\n", " ") or width < 60


def test_a_migration_runner_is_pointed_out() -> None:
    request = shell("alembic upgrade head", migration_runner=MigrationRunner("alembic", "alembic upgrade head --sql"))
    text = "\n".join(render(request, 80))
    assert "this runs the alembic migration runner" in text and "alembic upgrade head --sql" in text


def test_off_a_terminal_nothing_is_wrapped() -> None:
    from devagent.term import UNWRAPPED_WIDTH, Screen

    out = io.StringIO()
    screen = Screen(console=Console(file=out, width=UNWRAPPED_WIDTH, highlight=False))
    screen.wraps = False
    command = "curl -fsSL https://example.com/install.sh -o install.sh && " * 6 + "echo done"
    screen.print(approval_panel(shell(command), expand=False))
    lines = out.getvalue().split("\n")
    assert any(command in line for line in lines)
    assert max(len(line) for line in lines) < len(command) + 10  # a box around it, no padding to the width


def test_the_paused_output_in_a_pipe_keeps_commands_on_one_line(sandbox_image: str, home, repo, llm, cli) -> None:
    from llm_stub import tool_call

    command = "curl -fsSL https://example.com/install.sh -o install.sh && sha256sum install.sh && " * 3 + "echo ok"
    llm.script({"tool_calls": [tool_call("run_shell", {"command": command}, "call_1")]})
    paused = cli("task", "install it", "--base-url", llm.url, "--model", "stub", "--no-input")
    assert paused.returncode == 3, paused.stderr
    thread = re.search(r"thread ([0-9a-f]{8})", paused.stderr).group(1)
    lines = paused.stdout.split("\n")
    assert any(command in line for line in lines), paused.stdout
    assert f"  devagent approve {thread} --all" in lines and f"  devagent resume {thread}" in lines
    assert "↪" not in paused.stdout


def test_sql_devagent_cannot_analyse_is_called_that_with_no_made_up_reason() -> None:
    sql = "DO $$ BEGIN PERFORM 1; END $$;\nDROP TABLE legacy;\n"
    request = ApprovalRequest("t", "m1", "run_migration", "{}", "0" * 64, "pending", sql=sql,
                              database="postgres: app", sql_dialect="postgres")
    rows = [row for row in box_rows(render(request, 120)) if row.startswith("#")]
    assert rows[0].startswith("#1 DO  NOT ANALYSED: devagent could not analyse this statement"), rows
    assert "destroys" not in rows[0] and "review it by hand" not in rows[0]
    assert rows[1].startswith("#2 DROP TABLE  destroys data: drops table legacy"), rows
    assert "DESTROYS" not in "\n".join(render(request, 120))


def test_a_list_of_changed_files_that_could_not_be_made_is_unknown_never_empty() -> None:
    failed = shell("make test", changes_error="git failed: exit status 128")
    text = "\n".join(render(failed, 80))
    assert "changed files: unknown" in text and "no files changed" not in text
    assert "not fully known: git failed: exit status 128" in "\n".join(render(failed, 120))
    partial = shell("make test", changed_files=["M Makefile", "A .env (ignored)"], changes_error="1 path unreadable")
    text = "\n".join(render(partial, 120, verbose=True))
    assert "2 files changed since the last command, maybe more" in text
    assert "A .env (ignored)" in text
    assert "unknown (git failed: exit status 128)" in "\n".join(render(failed, 120, verbose=True))
    assert "changed files (none)" not in "\n".join(render(failed, 120, verbose=True)).replace("  ", " ")


def test_the_diff_view_shows_tabs_as_whitespace_and_escapes_every_other_control_character() -> None:
    from devagent.ui import diff_text

    diff = ("diff --git a/Makefile b/Makefile\n"
            "+++ b/Makefile\n"
            "@@ -1 +1,2 @@\n"
            "+test:\n"
            "+\t@echo ok\x1b[2J\r\n"
            "+a\tb\t\tc\n")
    console = Console(file=io.StringIO(), width=80, color_system=None, highlight=False)
    console.print(diff_text(diff))
    lines = console.file.getvalue().split("\n")
    assert lines[4] == "+→      @echo ok⟪U+001B ESC⟫[2J⟪U+000D CR⟫"
    assert lines[5] == "+a→     b→      →       c"  # aligned to tab stops every 8 columns
    assert "U+0009" not in console.file.getvalue()


def test_a_diffstat_keeps_its_alignment() -> None:
    from devagent.term import Screen, shown_lines

    stat = " Makefile   | 2 +-\n src/app.py | 10 ++++++++++\n 2 files changed, 11 insertions(+), 1 deletion(-)"
    out = io.StringIO()
    Screen(console=Console(file=out, width=80, color_system=None)).print(shown_lines(stat.split("\n")))
    assert out.getvalue().split("\n")[:3] == stat.split("\n")


@pytest.mark.parametrize("width", [30, 40, 50, 60, 80, 120])
def test_the_legend_never_cuts_a_key_from_its_word(width: int) -> None:
    out = io.StringIO()
    from devagent.term import Screen

    Screen(console=Console(file=out, width=width, color_system=None)).print(legend(KEYS, width))
    rows = out.getvalue().rstrip("\n").split("\n")
    assert all(len(row) <= width for row in rows) and not any("↪" in row for row in rows)
    entries = re.findall(r"\[?([ynadms])\]? (approve|reject|always|diff|more|stop)", " ".join(rows))
    assert entries == [(k, w) for k, w in KEYS], rows
    assert len(rows) == 1 or width < 56
    assert rows[-1].rstrip().endswith("›") and ("[y] approve" in rows[0] or width >= 56)


def test_a_list_of_changed_files_that_cannot_be_made_is_shown_as_unknown(sandbox_image: str, home, repo, llm,
                                                                          cli) -> None:
    """Through a real workspace: a FIFO where git reads ignore rules leaves the list incomplete, a
    lost record of the last command's state leaves it unknown; the screen says so, never "no
    files changed"."""

    from llm_stub import tool_call

    llm.script({"tool_calls": [tool_call("run_shell", {"command": "mkfifo .gitignore"}, "s1")]},
               {"tool_calls": [tool_call("write_file", {"path": "Makefile", "content": "test:\n\t@echo hi\n"}, "w1")]},
               {"tool_calls": [tool_call("run_shell", {"command": "make test"}, "s2")]})
    paused = cli("task", "go", "--base-url", llm.url, "--model", "stub", "--no-input")
    thread = re.search(r"thread ([0-9a-f]{8}) on branch", paused.stderr).group(1)
    assert cli("approve", thread, "s1").returncode == 0
    resumed = cli("resume", thread, "--no-input")
    assert resumed.returncode == 3, resumed.stderr
    screen = cli("pending", thread).stdout
    assert "│ make test" in screen and "1 file changed since the last command, maybe more" in screen, screen
    assert ".gitignore is not a regular file" in screen.replace("\n", " ")

    (home / "threads" / thread / "states" / "last-command").write_bytes(b"damaged")
    screen = cli("pending", thread).stdout
    assert "changed files: unknown" in screen and "no files changed" not in screen, screen
    assert "not fully known" in screen and "was not recorded" in screen.replace("\n", " ")


async def test_changes_to_ignored_files_are_listed_on_the_screen_marked_ignored(sandbox_image: str, home,
                                                                                 repo) -> None:
    from agents.testing import assistant_message, function_call

    from agent_helpers import ScriptedApprover, run_new_thread

    steps = [[function_call("write_file", {"path": ".venv/bin/activate", "content": "x\n"}, call_id="w1"),
              function_call("write_file", {"path": "Makefile", "content": "test:\n\t@echo ok\n"}, call_id="w2")],
             [function_call("run_shell", {"command": "make test"}, call_id="s1")],
             [assistant_message("done")]]
    approver = ScriptedApprover(None)
    await run_new_thread(home, repo, steps, approver)
    [request] = approver.shown
    compact = "\n".join(render(request, 80))
    assert "2 files changed since the last command" in compact
    more = "\n".join(render(request, 120, verbose=True))
    assert "A .venv/bin/activate (ignored)" in more and "M Makefile" in more


def test_the_typed_confirmation_says_why_each_word_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dropped table is asked as destroying data; a statement devagent could not analyse is asked
    as that, never as destroying or locking data."""
    from devagent.term import Screen
    from devagent.ui import TerminalApprover

    sql = "DROP TABLE legacy;\nDO $$ BEGIN PERFORM 1; END $$;\n"
    request = ApprovalRequest("t", "m1", "run_migration", "{}", "0" * 64, "pending", sql=sql,
                              database="postgres: app", sql_dialect="postgres")
    monkeypatch.setattr("sys.stdin", io.StringIO("y\nlegacy\ndo-2\n"))
    out = io.StringIO()
    decision = TerminalApprover(Screen(console=Console(file=out, width=120, color_system=None))).decide(request)
    assert decision.approved and decision.confirmed == ("legacy", "do-2")
    text = out.getvalue()
    assert "this SQL destroys data; type legacy to approve (1 of 2): " in text
    assert "devagent could not analyse statement 2; type do-2 to approve (2 of 2): " in text
    assert "locks" not in text


def test_the_summary_diffstat_keeps_its_first_line_aligned(sandbox_image: str, home, repo, llm, cli) -> None:
    from llm_stub import tool_call

    llm.script({"tool_calls": [tool_call("write_file", {"path": "a.txt", "content": "a\n"}, "w1"),
                               tool_call("write_file", {"path": "src/a_longer_name.txt", "content": "b\n"}, "w2")]},
               {"content": "done"})
    done = cli("task", "write", "--base-url", llm.url, "--model", "stub", "--no-input")
    assert done.returncode == 0, done.stderr
    stat = [line for line in done.stdout.split("\n") if " | " in line]
    assert len(stat) == 2 and all(line.startswith(" ") for line in stat), done.stdout
    assert len({line.index("|") for line in stat}) == 1, stat


@pytest.mark.parametrize("width", [40, 60, 80])
def test_the_heading_of_streamed_output_is_one_escaped_line(width: int) -> None:
    from devagent.term import Screen
    from devagent.ui import ConsoleEvents

    out = io.StringIO()
    events = ConsoleEvents(Screen(console=Console(file=out, width=width, color_system=None, highlight=False)))
    events.command_started("s1", "make test\x1b[2J && " + "x" * 100 + "\nrm -rf build")
    events.command_output("partial")
    events.command_started("s2", "echo next")
    events.command_output("next\n")
    events.command_started("s3", "true")  # says nothing: no heading
    events.tool_result("run_shell", "[exit code 0]", "s3")
    rows = out.getvalue().split("\n")
    # Cut to the width, but how many lines the command has is kept whole.
    assert rows[0].startswith("▸ make test⟪U+001B ESC⟫[2J &&") and rows[0].endswith("… (2 lines)"), rows
    assert len(rows[0]) <= width and "\x1b" not in out.getvalue()
    assert rows[1:4] == ["partial", "▸ echo next", "next"], rows
    assert rows[4].startswith("  ⎿ run_shell → [exit code 0]") and "▸ true" not in out.getvalue(), rows
