"""Terminal rendering (rich): live progress, the approval screen, the interactive prompt.

Everything that came from the model or a command is passed through `render_exact` and printed as
`rich.text.Text` (never as markup), so no control character, escape sequence or markup in it can
hide or rewrite what the approver sees.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from devagent.approvals import ApprovalRequest
from devagent.display import has_hidden_characters, lookalikes, render_exact
from devagent.runner import Decision

STREAM_DISPLAY_LIMIT = 256 * 1024  # per command; the model still gets head + tail


def safe(text: str) -> Text:
    return Text(render_exact(text))


def one_line(text: str, limit: int = 160) -> str:
    flat = render_exact(text).replace("\n", "⏎")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ConsoleEvents:
    """Live progress of a turn on the terminal (stderr when stdout carries JSON)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.streamed = 0

    def notice(self, text: str) -> None:
        self.console.print(Text(render_exact(text), style="dim"))

    def tool_call(self, name: str, arguments: str) -> None:
        self.streamed = 0
        if name in ("run_shell", "run_migration"):
            self.console.print(Text.assemble(("● ", "yellow"), (name, "bold"), " proposed"))
            return
        self.console.print(Text.assemble(("● ", "cyan"), (name, "bold"), " ", (one_line(arguments), "dim")))

    def tool_result(self, name: str, output: str) -> None:
        first = output.splitlines()[0] if output else ""
        self.console.print(Text.assemble("  ⎿ ", (one_line(first, 120), "dim")))

    def command_output(self, text: str) -> None:
        if self.streamed >= STREAM_DISPLAY_LIMIT:
            return
        self.streamed += len(text)
        if self.streamed >= STREAM_DISPLAY_LIMIT:
            text += "\n[output continues; not shown here]\n"
        self.console.out(render_exact(text), end="", highlight=False)

    def assistant_message(self, text: str) -> None:
        if text:
            self.console.print(Panel(safe(text), title="devagent", border_style="green"))


def approval_panel(req: ApprovalRequest, *, verbose: bool = False) -> Panel:
    """The approval screen: everything needed to decide, the exact payload whole."""
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="bold")
    meta.add_column()
    meta.add_row("thread", req.thread_id)
    meta.add_row("call", safe(req.call_id))
    meta.add_row("tool", req.tool)
    if req.tool == "run_shell":
        meta.add_row("cwd", req.workdir)
        meta.add_row("network", "on" if req.network else "off")
        meta.add_row("timeout", f"{req.timeout_s}s")
    else:
        meta.add_row("database", safe(req.database or "default"))
        if req.sql_path:
            meta.add_row("file", safe(req.sql_path))
    meta.add_row("sha256", req.sha256)
    parts: list = [meta, Text("")]

    payload = req.payload
    lines = render_exact(payload).split("\n")
    if req.tool == "run_shell":
        title = "command" if len(lines) == 1 else f"command ({len(lines)} lines: every line runs)"
        # Numbered lines in a grid, so a long line wraps inside its own row and can never pass
        # for a separate line of the command.
        body: Table | Text = Text(lines[0], style="bold", overflow="fold")
        if len(lines) > 1:
            body = Table.grid(padding=(0, 1))
            body.add_column(style="dim", justify="right", no_wrap=True)
            body.add_column(overflow="fold")
            for n, line in enumerate(lines, 1):
                body.add_row(f"{n:>3} │", Text(line, style="bold"))
        parts.append(Panel(body, title=title, title_align="left", border_style="yellow"))
    else:
        parts.append(Panel(Syntax(render_exact(payload), "sql", line_numbers=True, word_wrap=True),
                           title="SQL (exact bytes)", title_align="left", border_style="yellow"))
        parts.extend(_sql_statements(req))
        note = "runs in the thread's sandbox as one transaction, rolled back whole on the first error"
        if req.sql_path:
            note += f"; {render_exact(req.sql_path)} is read again before it runs, and refused if its sha256 is no longer the one above"
        parts.append(Text(note, style="dim"))

    warnings = _warnings(req)
    if warnings:
        parts.append(Text("\n".join(warnings), style="bold red"))
    if req.changed_files:
        shown = req.changed_files if verbose else req.changed_files[:20]
        text = Text("files changed since the last command:\n", style="bold")
        text.append(render_exact("\n".join(f"  {f}" for f in shown)))
        if len(shown) < len(req.changed_files):
            text.append(f"\n  … and {len(req.changed_files) - len(shown)} more (m: show more)")
        parts.append(text)
    if req.migration_runner:
        runner = req.migration_runner
        text = Text(f"this runs the {runner.name} migration runner: the SQL it applies is not shown here.",
                    style="bold magenta")
        if runner.preview_command:
            text.append("\np: preview its SQL first with: ", style="magenta")
            text.append(render_exact(runner.preview_command), style="bold")
        parts.append(text)
    return Panel(Group(*parts), title="approval needed", border_style="red")


def _sql_statements(req: ApprovalRequest) -> list:
    from devagent.sql_analysis import analyze_sql

    analysis = analyze_sql(req.sql or "", req.sql_dialect)
    table = Table(title="statements", title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("kind")
    table.add_column("statement")
    table.add_column("flags")
    for st in analysis.statements:
        flag = Text("DESTROYS/LOCKS DATA: " if st.destructive else "", style="bold red")
        flag.append(render_exact("; ".join(st.reasons)), style="red" if st.destructive else "yellow")
        table.add_row(str(st.index), st.kind, one_line(st.text, 60), flag)
    if not analysis.statements:
        return [Text("no SQL statements found", style="bold red")]
    return [table]


def _warnings(req: ApprovalRequest) -> list[str]:
    out = []
    if req.error:
        out.append(f"⚠ {req.error}")
    out += [f"⚠ {render_exact(notice)}" for notice in req.notices]  # paths in them come from the sandbox
    if has_hidden_characters(req.payload):
        out.append("⚠ hidden or control characters are shown as ⟪U+…⟫ tokens: they are part of what would run")
    looks = lookalikes(req.payload)
    if looks:
        names = ", ".join(sorted({f"{l.char} {l.codepoint} {l.name}" for l in looks})[:8])
        out.append(f"⚠ non-ASCII characters that may look like ASCII: {names}")
    return out


class TerminalApprover:
    """Asks on the terminal: approve, reject with a reason, approve always, show more."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def decide(self, req: ApprovalRequest) -> Decision | None:
        self.console.print(approval_panel(req))
        if req.error:
            reason = f"not run: {req.error}"
            self.console.print(Text(f"this call cannot run; it is rejected ({reason})", style="red"))
            return Decision(False, reason)
        while True:
            what = "command" if req.tool == "run_shell" else "SQL"
            choices = f"[y] approve  [n] reject  [a] approve always (this exact {what}, this thread)  [m] show more"
            if req.migration_runner and req.migration_runner.preview_command:
                choices += "  [p] preview SQL (as a separate command)"
            self.console.print(choices, markup=False, highlight=False)  # "[y]" is text, not a style
            answer = self.console.input("approve? ").strip().lower()
            if answer in ("y", "yes"):
                return self._confirm_destructive(req)
            if answer in ("n", "no"):
                reason = self.console.input("reason (sent to the model): ").strip()
                return Decision(False, reason or "rejected by the user")
            if answer in ("a", "always"):
                return Decision(True, always=True)
            if answer in ("m", "more"):
                self.console.print(approval_panel(req, verbose=True))
                self.console.print(Text(f"raw arguments: {render_exact(req.arguments)}", style="dim"))
            if answer == "p" and req.migration_runner and req.migration_runner.preview_command:
                preview = req.migration_runner.preview_command
                return Decision(False, f"The user wants to see the SQL first. Run exactly this preview "
                                       f"command (it will be approved separately): {preview}")

    def _confirm_destructive(self, req: ApprovalRequest) -> Decision | None:
        if req.tool != "run_migration":
            return Decision(True)
        from devagent.sql_analysis import analyze_sql

        word = analyze_sql(req.sql or "", req.sql_dialect).confirmation_word
        if word is None:
            return Decision(True)
        # The word comes from the model's SQL: shown escaped, never read as markup.
        typed = self.console.input(Text.assemble("this SQL destroys or locks data; type ",
                                                 (render_exact(word), "bold"), " to approve: "))
        if typed.strip() == word:
            return Decision(True, confirmed=(word,))
        self.console.print("confirmation did not match; not approved", style="red")
        return Decision(False, "the user did not confirm the destructive SQL")
