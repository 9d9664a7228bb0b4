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
    assert "DESTROYS" in verdicts[1] and "DESTROYS" in verdicts[2]
    assert "DESTROYS" not in verdicts[0]
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
