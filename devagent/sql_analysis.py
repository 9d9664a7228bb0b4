"""Split a SQL migration into statements and flag the ones that destroy or lock data.

The approval screen shows ``Statement.text`` verbatim, so every statement is an exact
slice of the submitted SQL; nothing is normalised, and nothing that could run is dropped.
Anything the analyser does not understand is reported as destructive: unknown SQL must
never look safe.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

# sqlglot warns on stderr when it falls back to a generic Command; that would land in the middle
# of the approval screen, which already flags such statements as not analysed.
logging.getLogger("sqlglot").setLevel(logging.CRITICAL)

DIALECTS = ("sqlite", "postgres")
FALLBACK_CONFIRMATION = "yes-destroy"
UNPARSED_REASON = "could not be parsed: review it by hand"
_UNKNOWN_NAME = "?"
_TX_REASON = "transaction control: the executor already runs the script in its own transaction"

# Only what the database engines treat as whitespace; str.isspace() also accepts
# characters such as U+001C that SQLite would reject, and those must not vanish.
_WS = " \t\n\r\f\v"
_DOLLAR_TAG = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TRIGGER_HEADS = (["CREATE", "TRIGGER"], ["CREATE", "TEMP", "TRIGGER"], ["CREATE", "TEMPORARY", "TRIGGER"])
_TX_HEADS = [[w] for w in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END", "ABORT")] + [
    ["START", "TRANSACTION"], ["PREPARE", "TRANSACTION"]]
_CREATE_FILLER = {"OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "UNLOGGED", "IF", "NOT", "EXISTS"}
# Statement types that cannot destroy data by themselves (DELETE/UPDATE are checked below).
_HARMLESS = (exp.Query, exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Comment,
             exp.Analyze, exp.Grant, exp.Set, exp.Pragma, exp.Transaction, exp.Commit, exp.Rollback)
# Top-level nodes that are statements; sqlglot happily parses "this is garbage" or "x" as a
# bare expression, which no database would run, so anything else counts as unparsed.
_STATEMENTS = _HARMLESS + (exp.DDL, exp.DML, exp.Drop, exp.Alter, exp.TruncateTable, exp.Command,
                           exp.Block, exp.Revoke, exp.Use, exp.Attach, exp.Detach, exp.Describe)


@dataclass(frozen=True)
class Statement:
    index: int  # 1-based
    text: str  # original[start:end], without the terminating ';'
    start: int
    end: int
    kind: str
    destructive: bool
    reasons: tuple[str, ...]  # also used for warnings on non-destructive statements
    targets: tuple[str, ...]  # objects whose data is destroyed or locked
    parse_error: str | None


@dataclass(frozen=True)
class SqlAnalysis:
    sql: str
    dialect: str
    sha256: str
    statements: tuple[Statement, ...]

    @property
    def destructive(self) -> tuple[Statement, ...]:
        return tuple(s for s in self.statements if s.destructive)

    @property
    def confirmation_word(self) -> str | None:
        flagged = self.destructive
        if not flagged:
            return None
        return next((s.targets[0] for s in flagged if s.targets), FALLBACK_CONFIRMATION)

    @property
    def has_transaction_control(self) -> bool:
        # Decided from the leading keywords, not the parse, so that transaction statements
        # sqlglot cannot parse (e.g. RELEASE SAVEPOINT) still count.
        return any(_is_tx(words) for s in self.statements for _, _, words in _scan(s.text, self.dialect))


def analyze_sql(sql: str, dialect: str = "sqlite") -> SqlAnalysis:
    if dialect not in DIALECTS:
        raise ValueError(f"unsupported dialect {dialect!r}; expected one of {DIALECTS}")
    statements = []
    for start, end, words in _scan(sql, dialect):
        end = start + len(sql[start:end].rstrip(_WS))
        start = end - len(sql[start:end].lstrip(_WS))
        text = sql[start:end]
        try:
            kind, reasons, targets, destructive, error = _classify(text, words, dialect)
        except Exception as e:  # an unexpected AST shape must not hide the statement
            kind, reasons, targets, destructive, error = "UNPARSED", [UNPARSED_REASON], [], True, repr(e)
        statements.append(Statement(len(statements) + 1, text, start, end, kind, destructive,
                                    tuple(reasons), tuple(dict.fromkeys(targets)), error))
    digest = hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest()
    return SqlAnalysis(sql, dialect, digest, tuple(statements))


def _scan(sql: str, dialect: str) -> list[tuple[int, int, list[str]]]:
    """Return (start, end, tokens) for each piece between top-level ';'.

    tokens holds the upper-cased top-level words, with "" standing for any run of other
    tokens (punctuation, literals), so "(BEGIN" does not look like it starts with BEGIN.

    Pieces made only of whitespace and comments are omitted. Unterminated quotes or
    comments run to the end of the text, so the remainder becomes one (unparseable) piece.
    """
    pg = dialect == "postgres"
    pieces: list[tuple[int, int, list[str]]] = []
    n, i, start = len(sql), 0, 0
    words: list[str] = []
    content, body = False, 0  # body: index in words where the current trigger-body statement starts
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            nl = sql.find("\n", i)
            i = n if nl < 0 else nl + 1
            continue
        if sql.startswith("/*", i):
            i = _skip_block_comment(sql, i, nested=pg)
            continue
        if c in _WS:
            i += 1
            continue
        if c == ";":
            # SQLite trigger bodies contain ';' and only a bare "END;" closes them
            # (the same rule as sqlite3_complete, which the sqlite3 shell splits by).
            trigger = not pg and any(words[:len(head)] == head for head in _TRIGGER_HEADS)
            if trigger and words[body:] != ["END"]:
                body = len(words)
            else:
                if content:
                    pieces.append((start, i, words))
                start, words, content, body = i + 1, [], False, 0
            i += 1
            continue
        content = True
        if c.isalpha() or c == "_":
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            words.append(sql[i:j].upper())
            i = j
            continue
        if words[body:][-1:] != [""]:  # collapse runs, but never across a trigger-body ';'
            words.append("")
        if c in "'\"" or (not pg and c in "`["):
            # PostgreSQL E'...' strings allow backslash escapes, including \'.
            backslash = pg and c == "'" and sql[i - 1] in "eE" and words[-2:] == ["E", ""]
            i = _skip_quoted(sql, i, "]" if c == "[" else c, backslash)
        elif pg and c == "$" and (m := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(m.group(), m.end())
            i = n if close < 0 else close + len(m.group())
        else:
            i += 1
    if content:
        pieces.append((start, n, words))
    return pieces


def _skip_quoted(sql: str, i: int, close: str, backslash: bool) -> int:
    j, n = i + 1, len(sql)
    while j < n:
        if backslash and sql[j] == "\\":
            j += 2
        elif sql[j] == close:
            if close != "]" and sql.startswith(close * 2, j):  # doubled quote is an escape
                j += 2
            else:
                return j + 1
        else:
            j += 1
    return n


def _skip_block_comment(sql: str, i: int, nested: bool) -> int:
    depth, j, n = 1, i + 2, len(sql)
    while j < n and depth:
        if sql.startswith("*/", j):
            depth, j = depth - 1, j + 2
        elif nested and sql.startswith("/*", j):  # PostgreSQL nests block comments
            depth, j = depth + 1, j + 2
        else:
            j += 1
    return j if not depth else n


def _is_tx(words: list[str]) -> bool:
    return words[:1] in _TX_HEADS or words[:2] in _TX_HEADS


def _lead(words: list[str]) -> str:
    """Human kind for statements sqlglot did not model, from the leading keywords."""
    words = [w for w in words if w]
    if not words:
        return "UNKNOWN"
    if words[0] in ("CREATE", "ALTER", "DROP"):
        rest = [w for w in words[1:] if w not in _CREATE_FILLER]
        return " ".join([words[0]] + rest[:1])
    return " ".join(words[:2] if words[:2] in _TX_HEADS + [["RELEASE", "SAVEPOINT"]] else words[:1])


def _name(node: object) -> str:
    if not isinstance(node, exp.Expression):  # sqlglot leaves absent parts as None or False
        return _UNKNOWN_NAME
    parts = node.parts if isinstance(node, (exp.Table, exp.Column)) else [node]
    return ".".join(p.name for p in parts) or node.sql() or _UNKNOWN_NAME


def _classify(text: str, words: list[str], dialect: str):
    """Return (kind, reasons, targets, destructive, parse_error) for one statement."""
    try:
        node = sqlglot.parse_one(text, read=dialect)
    except Exception as e:  # any parser failure must surface as "unparsed", never crash
        return "UNPARSED", [UNPARSED_REASON], [], True, _ANSI.sub("", str(e)) or type(e).__name__
    if node is None:
        return "UNPARSED", [UNPARSED_REASON], [], True, "no statement found"
    if _is_tx(words):  # checked first: sqlglot reads e.g. "SAVEPOINT a" as a column alias
        return _lead(words), [_TX_REASON], [], False, None
    if not isinstance(node, _STATEMENTS):
        return "UNPARSED", [UNPARSED_REASON], [], True, "not a statement (read only as an expression)"
    reasons: list[str] = []
    targets: list[str] = []
    destructive = False

    def flag(reason: str, *names: str, destroy: bool = True) -> None:
        nonlocal destructive
        reasons.append(reason)
        if destroy:
            destructive = True
            targets.extend(n for n in names if n != _UNKNOWN_NAME)

    kind = _lead(words)
    if isinstance(node, exp.Drop):
        objkind = (node.args.get("kind") or "OBJECT").upper()
        kind = f"DROP {'MATERIALIZED ' if node.args.get('materialized') else ''}{objkind}"
        extra = {"TABLE": " and all its rows", "SCHEMA": " and everything in it",
                 "DATABASE": " and everything in it"}.get(objkind, "")
        cascade = " (CASCADE also drops dependent objects)" if node.args.get("cascade") else ""
        for t in node.args.get("tables") or []:
            flag(f"drops {objkind.lower()} {_name(t)}{extra}{cascade}", _name(t))
        if not reasons:
            flag(f"drops a {objkind.lower()}{cascade}")
    elif isinstance(node, exp.TruncateTable):
        kind = "TRUNCATE"
        for t in node.expressions:
            flag(f"TRUNCATE removes every row of {_name(t)}", _name(t))
    elif isinstance(node, exp.Alter):
        kind = _alter(node, dialect, flag)
    elif isinstance(node, exp.Create):
        kind = f"CREATE {(node.args.get('kind') or '').upper()}".strip()
        index = node.this if isinstance(node.this, exp.Index) else None
        if dialect == "postgres" and index is not None and not node.args.get("concurrently"):
            table = _name(index.args.get("table"))
            flag(f"CREATE INDEX without CONCURRENTLY locks writes to {table} on PostgreSQL", table)
    elif isinstance(node, exp.Command) and (words[:1] == ["SHOW"] or (
            words[:1] == ["EXPLAIN"] and not {"ANALYZE", "ANALYSE"} & set(words))):
        pass  # read-only; EXPLAIN ANALYZE is excluded because it executes the statement
    elif not isinstance(node, _HARMLESS):
        # sqlglot's Command fallback, or several statements sqlglot split where the scanner
        # did not (e.g. a SQLite trigger body).
        flag(f"{kind} is not analysed: review it by hand")
    else:
        kind = {exp.Insert: "INSERT", exp.Update: "UPDATE", exp.Delete: "DELETE",
                exp.Merge: "MERGE"}.get(type(node), "SELECT" if isinstance(node, exp.Query) else kind)

    # DELETE/UPDATE may also hide inside data-modifying CTEs, so search the whole tree.
    for dml in node.find_all(exp.Delete, exp.Update):
        if not dml.args.get("where"):
            table = _name(dml.this)
            verb = "removes" if isinstance(dml, exp.Delete) else "overwrites"
            flag(f"{dml.key.upper()} without WHERE {verb} every row of {table}", table)
    for merge in node.find_all(exp.Merge):
        if any(isinstance(w.args.get("then"), exp.Var) and w.args["then"].name.upper() == "DELETE"
               for w in merge.find_all(exp.When)):
            flag(f"MERGE deletes matched rows of {_name(merge.this)}", _name(merge.this))
    return kind, reasons, targets, destructive, None


def _alter(node: exp.Alter, dialect: str, flag) -> str:
    objkind = (node.args.get("kind") or "TABLE").upper()
    table = _name(node.this)
    labels: list[str] = []
    for action in node.args.get("actions") or []:
        if isinstance(action, exp.ColumnDef):
            labels.append("ADD COLUMN")
            cons = [c.args.get("kind") for c in action.args.get("constraints") or []]
            not_null = any(isinstance(c, exp.NotNullColumnConstraint) and not c.args.get("allow_null")
                           or isinstance(c, exp.PrimaryKeyColumnConstraint) for c in cons)
            filled = any(isinstance(c, (exp.DefaultColumnConstraint, exp.GeneratedAsIdentityColumnConstraint))
                         for c in cons)
            if not_null and not filled:
                column = f"{table}.{action.name}"
                if dialect == "postgres":
                    flag(f"adds NOT NULL column {column} without DEFAULT: fails if {table} has rows", table)
                else:
                    flag(f"SQLite rejects NOT NULL column {column} without DEFAULT", destroy=False)
        elif isinstance(action, exp.Drop):
            what = (action.args.get("kind") or "").upper()
            labels.append(f"DROP {what}".strip())
            for t in action.args.get("tables") or []:
                if what == "COLUMN":
                    flag(f"drops column {table}.{_name(t)} and its data", f"{table}.{_name(t)}")
                else:
                    flag(f"drops {what.lower() or 'object'} {_name(t)} of {table}", destroy=False)
        elif isinstance(action, exp.AlterColumn):
            labels.append("ALTER COLUMN")
            if action.args.get("dtype"):
                column = f"{table}.{action.name}"
                flag(f"changes the type of {column}: rewrites {table} under lock and may lose data", column)
        elif isinstance(action, (exp.RenameColumn, exp.AlterRename)):
            # sqlglot reads PostgreSQL's "RENAME c TO d" (COLUMN omitted) as a table rename
            # to c plus a TO option; report it as the column rename it is.
            to = action.args.get("to") if isinstance(action, exp.RenameColumn) else next(
                (o.this for o in node.args.get("options") or [] if isinstance(o, exp.ToTableProperty)), None)
            if to is not None:
                labels.append("RENAME COLUMN")
                what = f"column {table}.{_name(action.this)} to {_name(to)}"
            else:
                labels.append("RENAME")
                what = f"{objkind.lower()} {table} to {_name(action.this)}"
            flag(f"renames {what}: readers of the old name break", destroy=False)
        elif isinstance(action, exp.AddConstraint):
            labels.append("ADD CONSTRAINT")
        else:
            label = (action.name if isinstance(action, exp.Command) else action.key).upper()
            labels.append(label)
            flag(f"ALTER {objkind} action {label} is not analysed: review it by hand")
    return " ".join([f"ALTER {objkind}", ", ".join(dict.fromkeys(labels))]).strip()
