"""Terminal rendering: live progress, the approval screen, the one-key approval prompt.

Everything printed goes through `devagent.term` (escaped `Shown` text only). The approval screen
is compact: the exact payload in its box, one dim line of context, the keys; the rest is one key
(`m`) away.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any

from rich.cells import cell_len, get_character_cell_size
from rich.console import Console, ConsoleOptions, Group
from rich.measure import Measurement
from rich.panel import Panel
from rich.segment import Segment
from rich.style import Style
from rich.table import Table

from devagent.words import count as counted
from devagent.approvals import ApprovalRequest, parse_arguments, read_shell_call
from devagent.display import has_hidden_characters, lookalikes, render_head
from devagent.decisions import Decision
from devagent.term import (CONTINUATION, SafeRenderable, Screen, Shown, StatusLine, check_printable, shown,
                           shown_lines)

STREAM_DISPLAY_LIMIT = 256 * 1024  # per command; the model still gets head + tail
PAYLOAD_DISPLAY_LIMIT = 256 * 1024  # characters of an escaped command or SQL on the screen
RAW_ARGUMENTS_LIMIT = 16 * 1024
MESSAGE_LIMIT = 64 * 1024
LABEL_LIMIT = 48
SHORT_SHA = 12
CONFIRM_TRIES = 3
NOT_ANALYSED = "devagent could not analyse this statement"
STOP_REASON = ("The user stopped this turn: do not continue this task. Wait for the user's next "
               "message, which is a new task.")
TAB_WIDTH = 8  # where a terminal (and git's pager) puts tab stops


# ------------------------------------------------------------------ renderables


class ExactLines(SafeRenderable):
    """Escaped text, line by line, wrapped to the width it is given. A wrapped piece of a line
    starts with ↪, so at no width can it pass for a line of its own; with several lines, each
    line is numbered. Shows at most `limit` escaped characters and says how many more there are.
    `headers`: rows shown above a line (index → renderables), e.g. a statement's verdict."""

    def __init__(self, text: str, *, numbered: bool | None = None, style: str = "bold",
                 headers: dict[int, list[Shown]] | None = None, limit: int = PAYLOAD_DISPLAY_LIMIT) -> None:
        rendered, self.left = render_head(text, limit)
        self.lines = rendered.split("\n")
        self.total_lines = text.count("\n") + 1
        self.numbered = self.total_lines > 1 if numbered is None else numbered
        self.style = Style.parse(style) if style else Style()
        self.headers = headers or {}
        self.digits = max(3, len(str(self.total_lines)))

    @property
    def gutter(self) -> int:
        return self.digits + 3 if self.numbered else 0

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Any]:
        width = max(options.max_width, self.gutter + 4)
        dim = Style(dim=True)
        for index, line in enumerate(self.lines):
            for header in self.headers.get(index, []):
                # Wrapped with a hanging indent: a header row never starts where a line number would.
                for n, row in enumerate(header.wrap_unmarked(console, width - 3)):
                    if n:
                        yield Segment("   ")
                    yield from row.render(console, end="")
                    yield Segment.line()
            if self.numbered:
                first, rest = width - self.gutter, width - self.gutter
            else:
                first, rest = width, width - 2
            for n, chunk in enumerate(_chunks(line, first, rest)):
                if self.numbered:
                    mark = f"{index + 1:>{self.digits}} │ " if n == 0 else f"{'':>{self.digits}} {CONTINUATION} "
                    yield Segment(mark, dim)
                elif n:
                    yield Segment(f"{CONTINUATION} ", dim)
                yield Segment(chunk, self.style)
                yield Segment.line()
        if self.left:
            yield shown(f"… {self.left} more characters are not shown here; the sha256 covers all of them",
                        style="bold red")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        longest = max((cell_len(line) for line in self.lines), default=0)
        header = max((cell_len(h.plain) for rows in self.headers.values() for h in rows), default=0)
        widest = min(max(self.gutter + max(longest, 1), header), options.max_width)
        return Measurement(min(self.gutter + 8, widest), widest)


def _chunks(line: str, first: int, rest: int) -> list[str]:
    """`line` cut into pieces of at most `first`, then `rest`, terminal cells."""
    width = max(first, 1)
    if line.isascii():  # escaped text: printable ASCII is one cell per character
        out = [line[:width]]
        i, width = width, max(rest, 1)
        while i < len(line):
            out.append(line[i:i + width])
            i += width
        return out
    out, current, used = [], [], 0
    for ch in line:
        size = get_character_cell_size(ch)
        if current and used + size > width:
            out.append("".join(current))
            current, used, width = [], 0, max(rest, 1)
        current.append(ch)
        used += size
    out.append("".join(current))
    return out


class Pieces(SafeRenderable):
    """Short pieces joined by " · ", filling each row and never breaking inside a piece that fits."""

    def __init__(self, pieces: list[Shown], style: str = "dim") -> None:
        self.pieces = pieces
        self.style = style

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Any]:
        width = options.max_width
        row = shown(style=self.style)
        for piece in self.pieces:
            if row.plain and cell_len(row.plain) + 3 + cell_len(piece.plain) > width:
                yield row
                row = shown(style=self.style)
            if row.plain:
                row.append(" · ")
            row.append_text(piece)
        if row.plain:
            yield row

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        total = sum(cell_len(p.plain) for p in self.pieces) + 3 * max(len(self.pieces) - 1, 0)
        return Measurement(min(20, total), min(total, options.max_width))


class TitledPanel(SafeRenderable):
    """A yellow box whose title is short pieces joined by " · ", never cut: what does not fit the
    top border goes to the bottom one, and what fits neither on a line under the box (a cut title
    could hide "every line runs")."""

    def __init__(self, body: Any, pieces: list[str], *, expand: bool = True) -> None:
        check_printable(body)
        self.body = body
        self.pieces = [shown(p, limit=LABEL_LIMIT * 2) for p in pieces]
        self.expand = expand

    def _panel(self, top: list[Shown], bottom: list[Shown]) -> Panel:
        return Panel(self.body, title=_joined(top), subtitle=_joined(bottom) if bottom else None,
                     title_align="left", subtitle_align="left", border_style="yellow", expand=self.expand)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Any]:
        room = options.max_width - 6  # "╭─ " and " ─╮" around a title
        top, rest = _fitting(self.pieces, room)
        bottom, rest = _fitting(rest, room)
        yield self._panel(top, bottom)
        if rest:
            yield Pieces(rest, style="bold")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self._panel(self.pieces, []))


def _joined(pieces: list[Shown]) -> Shown:
    title = shown()
    for n, piece in enumerate(pieces):
        if n:
            title.append(" · ")
        title.append_text(piece)
    return title


def _fitting(pieces: list[Shown], room: int) -> tuple[list[Shown], list[Shown]]:
    """The leading pieces that fit `room` cells joined, and the rest (in order)."""
    used = -3
    for n, piece in enumerate(pieces):
        used += 3 + cell_len(piece.plain)
        if used > room:
            return pieces[:n], pieces[n:]
    return pieces, []


# ------------------------------------------------------------------ live progress


def call_label(tool: str, arguments: str) -> str:
    """What a call is about, for the lines that report its result: the command, the SQL file."""
    args, _error = parse_arguments(arguments)
    if tool == "run_shell":
        return read_shell_call(arguments, 0).command or tool
    if tool == "run_migration":
        return "SQL " + str(args.get("path") or str(args.get("sql") or "").strip().split("\n")[0])
    target = args.get("path") or args.get("pattern")
    return f"{tool} {target}" if isinstance(target, str) else tool


def command_heading(command: str, width: int | None) -> Shown:
    """`▸ pytest -q tests/x.py`, dim, on one screen line (cut with … to `width` cells); of a
    command of several lines, the first and how many there are (kept whole when the line is cut)."""
    lines = command.strip("\n").split("\n")
    more = f" … ({len(lines)} lines)" if len(lines) > 1 else ""
    line = shown(("▸ ", "dim"), (lines[0], "dim"), limit=PAYLOAD_DISPLAY_LIMIT)
    if width is not None and cell_len(line.plain) + len(more) > width:
        more = more.replace(" …", "", 1)  # the cut's own … says the line goes on
        line.truncate(max(width - len(more), 4), overflow="ellipsis")
    if more:
        line.append(more, "dim")
    return line


class ConsoleEvents:
    """Live progress of a turn on the terminal (stderr when stdout carries JSON)."""

    def __init__(self, screen: Screen | Console, status: StatusLine | None = None) -> None:
        self.screen = screen if isinstance(screen, Screen) else Screen(console=screen)
        self.streamed = 0
        self.labels: dict[str, str] = {}
        self.status = status or StatusLine()
        self.heading: str | None = None  # the command whose output has not started yet
        self.midline = False  # streamed output ended without a newline

    def activity(self, what: str | None) -> None:
        self.status.show(what)

    def notice(self, text: str) -> None:
        self._end_stream()
        self.screen.print(shown(text, style="dim"))

    def tool_call(self, name: str, arguments: str, call_id: str = "") -> None:
        self._end_stream()
        self.streamed = 0
        self.labels[call_id] = call_label(name, arguments)
        if name in ("run_shell", "run_migration"):
            return  # the approval screen (or the list of pending calls) shows it whole
        self.screen.print(shown(("● ", "cyan"), (name, "bold"), " ", (arguments, "dim"), limit=160))

    def known_call(self, call_id: str, tool: str, arguments: str) -> None:
        self.labels.setdefault(call_id, call_label(tool, arguments))

    def tool_result(self, name: str, output: str, call_id: str = "") -> None:
        self._end_stream()
        first = output.split("\n", 1)[0] if output else ""
        label = self.labels.get(call_id) or name
        head = shown("  ⎿ ", (_short(label), "bold"))
        result = shown(" → ", (first, "dim"), limit=160)
        if self.screen.wraps and head.cell_len + result.cell_len > self.screen.width:
            # Too long for one screen line: the result on a line of its own under the command,
            # rather than wrapped mid-word.
            self.screen.print(shown_lines([head, shown("   ").append_text(result)]))
            return
        self.screen.print(head.append_text(result))

    def command_output(self, text: str) -> None:
        # The status line steps aside once the command speaks: a line redrawn in place and
        # streamed output must not share a terminal line.
        self.status.show(None)
        if self.streamed >= STREAM_DISPLAY_LIMIT or not text:
            return
        if self.heading is not None:
            # Named once its output starts: the outputs of several commands never run together.
            self.screen.print(command_heading(self.heading, self.screen.width if self.screen.wraps else None))
            self.heading = None
        self.streamed += len(text)
        if self.streamed >= STREAM_DISPLAY_LIMIT:
            text += "\n[output continues; not shown here]\n"
        self.screen.stream(text)
        self.midline = not text.endswith("\n")

    def command_started(self, call_id: str, command: str) -> None:
        self._end_stream()
        self.streamed = 0
        self.heading = command

    def _end_stream(self) -> None:
        """Our next line starts on a line of its own, after output that did not end one."""
        self.heading = None
        if self.midline:
            self.screen.stream("\n")
            self.midline = False

    def assistant_message(self, text: str) -> None:
        self._end_stream()
        if text:
            # The model's lines stay lines, inside its own box; a CR or escape in them is a token.
            self.screen.print(Panel(shown_lines(text.split("\n"), limit=MESSAGE_LIMIT), title=shown("devagent"),
                                    border_style="green", expand=self.screen.wraps))

    def decision_applied(self, approval: Any) -> None:
        pass  # the screen, `approve` or the rule notice already said so

    def approved_by_rule(self, call_id: str, tool: str, arguments: str) -> None:
        """A call an "always" rule approved: the exact command it runs, not only its id."""
        args, _error = parse_arguments(arguments)
        if tool == "run_shell":
            payload = read_shell_call(arguments, 0).command
        else:
            payload = str(args.get("sql") or args.get("path") or "")
        self.labels[call_id] = call_label(tool, arguments)
        title = shown("approved by your 'always' rule: ", tool, limit=60)
        self.screen.print(Panel(ExactLines(payload), title=title, title_align="left", border_style="green",
                                expand=self.screen.wraps))


# ------------------------------------------------------------------ the approval screen


def _sql_analysis(req: ApprovalRequest) -> Any:
    from devagent.sql_rowcount import probed_schema

    schema = probed_schema(req.sql or "", req.sql_probe)
    return _analyze(req.sql or "", req.sql_dialect, json.dumps(schema, sort_keys=True) if schema else None)


@lru_cache(maxsize=4)
def _analyze(sql: str, dialect: str, schema: str | None = None) -> Any:
    """One analysis per SQL text, however often the screen is drawn (it is costly for huge SQL).
    `schema`: the columns read from the database for the screen, as JSON."""
    from devagent.sql_analysis import analyze_sql

    return analyze_sql(sql, dialect, json.loads(schema) if schema else None)


def unanalysed_words(req: ApprovalRequest) -> set[str]:
    """The confirmation words that stand for a statement devagent could not analyse (`do-3`)."""
    from devagent.sql_analysis import NOT_UNDERSTOOD

    if req.tool != "run_migration" or not req.sql:
        return set()
    return {st.confirmation_words[-1] for st in _sql_analysis(req).statements
            if st.verdict == NOT_UNDERSTOOD and st.confirmation_words}


def confirmation_words(req: ApprovalRequest) -> tuple[str, ...]:
    """The names the human must type to approve SQL that destroys data (none: not needed)."""
    if req.tool != "run_migration" or req.error:
        return ()
    from devagent.decisions import required_confirmation

    return required_confirmation(req)


def approval_panel(req: ApprovalRequest, *, verbose: bool = False, title: list[str] | None = None,
                   expand: bool = True) -> Group:
    """The approval screen: the exact payload whole, one line of context, warnings.

    verbose: everything else (thread, call id, full sha256, raw arguments, changed files).
    title: the pieces of what the box is called (default: the tool, "k of n" when several wait).
    """
    if title is None:
        title = [req.tool]
        if req.batch_size > 1:
            title.append(f"{req.batch_index} of {req.batch_size}")
    parts: list[Any] = []
    if req.tool == "run_migration":
        parts.append(_sql_box(req, title, expand))
    else:
        body = ExactLines(req.payload)
        if body.total_lines > 1:
            title = [*title, f"command ({body.total_lines} lines: every line runs)"]
        parts.append(TitledPanel(body, title, expand=expand))
    parts.append(Pieces(_context(req)))
    warnings = _warnings(req)
    if warnings:
        parts.append(shown_lines(warnings, style="bold red"))
    if req.migration_runner:
        runner = req.migration_runner
        lines = [shown(f"this runs the {runner.name} migration runner: the SQL it applies is not shown here.",
                       style="bold magenta")]
        if runner.preview_command:
            lines.append(shown(("p: preview its SQL first with: ", "magenta"), (runner.preview_command, "bold")))
        parts.append(shown_lines(lines))
    if verbose:
        parts.append(_details(req))
    return Group(*parts)


def _context(req: ApprovalRequest) -> list[Shown]:
    pieces = []
    if req.tool == "run_shell":
        pieces += [shown(req.workdir), shown("network " + ("on" if req.network else "off")),
                   shown(f"timeout {req.timeout_s}s")]
    else:
        # Labelled: a row of the context line never starts with outside text.
        pieces.append(shown("database ", req.database or "(default)", limit=120))
        if req.sql_path:
            pieces.append(shown("file ", req.sql_path, limit=120))
    pieces.append(shown(f"sha256 {req.sha256[:SHORT_SHA]}"))
    pieces.append(shown(changed_summary(req), style="bold red" if req.changes_error else ""))
    return pieces


def changed_summary(req: ApprovalRequest) -> str:
    """"k files changed since the last command", or that the list is unknown or incomplete (the
    reason is on a ⚠ line below): an empty list is never shown for one that could not be made."""
    k = len(req.changed_files)
    if req.changes_error and k == 0:
        return "changed files: unknown"
    counted = f"{'no' if k == 0 else k} file{'' if k == 1 else 's'} changed since the last command"
    return counted + (", maybe more" if req.changes_error else "")


def _sql_box(req: ApprovalRequest, title: list[str], expand: bool) -> TitledPanel:
    """The SQL once, exact and numbered, with each statement's verdict (and the rows it would
    touch, as counted on the database) on a row above it."""
    from devagent.sql_analysis import NOT_UNDERSTOOD, UNPARSED_REASON
    from devagent.sql_rowcount import probed_counts

    sql = req.sql or ""
    statements = _sql_analysis(req).statements if sql else ()
    headers: dict[int, list[Shown]] = {}
    counts = {c.statement: c for c in probed_counts(sql, req.sql_probe)} if sql else {}
    for st in statements:
        line = sql.count("\n", 0, st.start)
        parts: list[Any] = [(f"#{st.index} ", "bold"), (st.kind, "bold")]
        touched = counts.get(st.index)
        # A WHERE that looked bounded, but the database says it matches every row: destroys data.
        escalated = touched is not None and touched.every_row and not st.destructive
        if st.verdict == NOT_UNDERSTOOD:
            # Only what is known: that it was not analysed, and why when that is known (a DO block).
            known = [r for r in st.reasons if r != UNPARSED_REASON]
            parts += [("  NOT ANALYSED: ", "bold red"), ("; ".join([NOT_ANALYSED, *known]), "red")]
        elif escalated:
            parts += [("  destroys data: ", "bold red"), (f"{touched.describe()} (every row)", "red")]
        elif st.destructive:
            parts += [("  destroys data: ", "bold red"), ("; ".join(st.reasons), "red")]
        elif st.reasons:
            parts += [("  ", ""), ("; ".join(st.reasons), "yellow")]
        elif touched is None:
            parts.append(("  ✓", "green"))
        if touched is not None and not escalated:
            # After a verdict's reasons, the count reads as one more of them, not as their tail.
            parts += [("; " if st.reasons and st.verdict != NOT_UNDERSTOOD else "  ", ""), (touched.describe(), "cyan")]
        row = shown(*parts, inline=True)
        headers.setdefault(line, []).append(row)
    count = counted(len(statements), "statement")
    body: Any = ExactLines(sql, numbered=True, headers=headers)
    if not statements:
        body = Group(shown("no SQL statements found", style="bold red"), body)
    return TitledPanel(body, [*title, f"SQL, {count}", "exact bytes"], expand=expand)


def _warnings(req: ApprovalRequest) -> list[str]:
    out = []
    if req.error:
        out.append(f"⚠ {req.error}")
    out += [f"⚠ {notice}" for notice in req.notices]  # escaped when shown: paths in them come from the sandbox
    if has_hidden_characters(req.payload):
        out.append("⚠ hidden or control characters are shown as visible U+XXXX NAME tokens: they are part of what would run")
    looks = lookalikes(req.payload[:PAYLOAD_DISPLAY_LIMIT])
    if looks:
        names = ", ".join(sorted({f"{l.char} {l.codepoint} {l.name}" for l in looks})[:8])
        out.append(f"⚠ non-ASCII characters that may look like ASCII: {names}")
    if req.tool == "run_migration" and req.sql_path:
        out.append(f"  {req.sql_path} is read again before it runs, and refused if its sha256 is no longer this one")
    return out


def _details(req: ApprovalRequest) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(shown("thread"), shown(req.thread_id))
    grid.add_row(shown("call"), shown(req.call_id))
    grid.add_row(shown("tool"), shown(req.tool))
    grid.add_row(shown("sha256"), shown(req.sha256))
    if req.tool == "run_shell":
        grid.add_row(shown("cwd"), shown(req.workdir))
        grid.add_row(shown("network"), shown("on" if req.network else "off"))
        grid.add_row(shown("timeout"), shown(f"{req.timeout_s}s"))
    else:
        grid.add_row(shown("database"), shown(req.database or "default"))
        if req.sql_path:
            grid.add_row(shown("file"), shown(req.sql_path))
    grid.add_row(shown("arguments"), shown(req.arguments, limit=RAW_ARGUMENTS_LIMIT, style="dim"))
    grid.add_row(shown("args sha256"), shown(req.arguments_sha256))
    empty = f"unknown ({req.changes_error})" if req.changes_error else "(none)"
    changed = shown_lines(req.changed_files[:500] or [empty])
    if len(req.changed_files) > 500:
        changed = shown_lines([changed, shown(f"… and {len(req.changed_files) - 500} more")])
    grid.add_row(shown("changed files"), changed)
    return grid


# ------------------------------------------------------------------ the prompt


def legend(keys: list[tuple[str, str]], width: int) -> Shown:
    """"[y] approve  [n] reject ..." on one line: the roomiest form that fits the width; on a
    screen too narrow for any, whole entries on rows of their own (never a key cut from its word)."""
    def entry(key: str, what: str, brackets: str = "[]") -> Shown:
        return shown((f"{brackets[:1]}{key}{brackets[1:]}", "bold"), f" {what}")

    for brackets, gap in (("[]", "  "), ("[]", " "), ("", "  "), ("", " ")):
        text = shown()
        for i, (key, what) in enumerate(keys):
            if i:
                text.append(gap)
            text.append_text(entry(key, what, brackets))
        text.append(" › ")
        if cell_len(text.plain) <= width:
            return text
    rows, row = [], shown()
    for key, what in keys:
        piece = entry(key, what)
        if row.plain and cell_len(row.plain) + 2 + cell_len(piece.plain) + 3 > width:
            rows.append(row)
            row = shown()
        if row.plain:
            row.append("  ")
        row.append_text(piece)
    rows.append(row.append(" › "))
    return shown_lines(rows)


class TerminalApprover:
    """Asks on the terminal, one key: approve, reject (with a reason), always, diff, more, stop."""

    def __init__(self, screen: Screen | Console, diff: Callable[[ApprovalRequest], str] | None = None) -> None:
        self.screen = screen if isinstance(screen, Screen) else Screen(console=screen)
        self.diff = diff

    def decide(self, req: ApprovalRequest) -> Decision | None:
        self.screen.print(approval_panel(req, expand=self.screen.wraps))
        if req.error:
            reason = f"not run: {req.error}"
            self.screen.print(shown(f"this call cannot run; it is rejected ({reason})", style="red"))
            return Decision(False, reason)
        words = confirmation_words(req)
        keys = [("y", "approve"), ("n", "reject")]
        if words:
            self.screen.print(shown("no [a] always here: SQL that destroys data needs its name typed every time",
                                    style="dim"))
        elif req.tool == "run_shell" and not req.rule_offer:
            self.screen.print(shown(f"no [a] always here: {req.rule_note or 'no rule can cover this command'}",
                                    style="dim"))
        else:
            keys.append(("a", "always"))
        keys += [("d", "diff"), ("m", "more"), ("s", "stop")]
        preview = req.migration_runner.preview_command if req.migration_runner else None
        if preview:
            keys.append(("p", "preview SQL"))
        while True:
            key = self.screen.key(legend(keys, self.screen.width), "".join(k for k, _ in keys))
            if key == "y":
                if not words:
                    return Decision(True)
                unanalysed = unanalysed_words(req)
                if all(self._confirm(word, n, len(words), word in unanalysed) for n, word in enumerate(words, 1)):
                    return Decision(True, confirmed=words)
            elif key == "n":
                reason = self.screen.ask(shown("reason (sent to the model): ")).strip()
                return Decision(False, reason or "rejected by the user")
            elif key == "a" and req.rule_offer:
                scope = self._rule_scope(req)
                if scope is not None:
                    return Decision(True, rule_scope=scope)
            elif key == "a":
                return Decision(True, always=True)
            elif key == "d":
                self._show_diff(req)
            elif key == "m":
                self.screen.print(_details(req))
            elif key == "s":
                self.screen.print(shown("stopped: the model is told; the turn ends and its work is committed",
                                        style="bold"))
                return Decision(False, STOP_REASON, stop=True)
            elif key == "p" and preview:
                return Decision(False, f"The user wants to see the SQL first. Run exactly this preview "
                                       f"command (it will be approved separately): {preview}")

    def _rule_scope(self, req: ApprovalRequest) -> str | None:
        """Where to save the rules `a` offers: this thread, this project, or me; b goes back."""
        from devagent.policy import PROJECT_FILE, _display, user_policy_path

        rules = " and ".join(rule.describe() for rule in req.rule_offer)
        self.screen.print(shown("always: ", (rules, "bold"), inline=True))
        self.screen.print(shown(f"save it for this thread, this project ({PROJECT_FILE}) "
                                f"or me ({_display(user_policy_path(), 'user')})", style="dim"))
        keys = [("t", "this thread"), ("p", "this project"), ("u", "me"), ("b", "back")]
        key = self.screen.key(legend(keys, self.screen.width), "tpub")
        return {"t": "thread", "p": "project", "u": "user"}.get(key)

    def _confirm(self, word: str, number: int = 1, count: int = 1, unanalysed: bool = False) -> bool:
        """One typed name; a typo asks again (3 tries), then back to the keys, nothing decided."""
        which = f" ({number} of {count})" if count > 1 else ""
        why = (f"devagent could not analyse statement {word.rsplit('-', 1)[-1]}" if unanalysed
               else "this SQL destroys data")
        for attempt in range(1, CONFIRM_TRIES + 1):
            typed = self.screen.ask(shown(f"{why}; type ", (word, "bold"), f" to approve{which}: "))
            if typed.strip() == word:
                return True
            left = CONFIRM_TRIES - attempt
            then = f"; {left} more {'try' if left == 1 else 'tries'}" if left else "; not approved: choose again"
            self.screen.print(shown("that is not ", (word, "bold"), then, style="red"))
        return False

    def _show_diff(self, req: ApprovalRequest) -> None:
        if not req.changed_files:
            self.screen.print(shown(changed_summary(req), style="bold red" if req.changes_error else "dim"))
            return
        if self.diff is None:
            self.screen.print(shown_lines(req.changed_files))
            return
        try:
            text = self.diff(req)
        except Exception as exc:  # shown, never fatal: the decision is still to be made
            self.screen.print(shown(f"the diff cannot be shown: {exc}", style="red"))
            return
        self.screen.page([diff_text(text)], text.count("\n") + 1)


def diff_text(text: str, limit: int = 1024 * 1024) -> Shown:
    """A diff, escaped line by line, with its file headers and hunk lines coloured; at most `limit`
    escaped characters, then how much more there is."""
    rows: list[Shown] = []
    budget = limit
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    for number, line in enumerate(lines):
        if budget <= 0:
            rows.append(shown(f"… {len(lines) - number} more lines not shown", style="dim"))
            break
        style = ("bold" if line.startswith(("diff --git", "+++", "---")) else "green" if line.startswith("+")
                 else "red" if line.startswith("-") else "cyan" if line.startswith("@@") else "")
        piece = _diff_line(line, style, budget)
        budget -= len(piece.plain) + 1
        rows.append(piece)
    return shown_lines(rows)


def _diff_line(line: str, style: str, limit: int) -> Shown:
    """One line of a diff, escaped, its tabs shown as a dim → padded to the next tab stop: a tab is
    harmless whitespace in a diff, and a token for each would drown the code."""
    if "\t" not in line:
        return shown((line, style), limit=limit)
    out, column = shown(), 0
    for number, piece in enumerate(line.split("\t")):
        if number:
            pad = TAB_WIDTH - column % TAB_WIDTH
            out.append_text(shown(("→" + " " * (pad - 1), "dim")))
            column += pad
        part = shown((piece, style), limit=max(limit - len(out.plain), 0))
        out.append_text(part)
        column += cell_len(part.plain)
    return out


def pending_screens(requests: Iterable[ApprovalRequest], expand: bool) -> list[Any]:
    """The paused calls as `pending` and a paused run list them: the call id is in each title."""
    return [approval_panel(r, title=[r.tool, f"thread {r.thread_id}", f"call {_short(r.call_id)}"], expand=expand)
            for r in requests]


def _short(text: str, limit: int = LABEL_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
