"""Split a SQL migration into statements and say what each one does to data.

The approval screen shows ``Statement.text`` verbatim and the executor sends each one to the
database as exactly one statement, so every statement is an exact, contiguous slice of the
submitted SQL; the slices, with what lies between them (whitespace, comments, ';'), make up
the whole input again. Nothing is normalised, and nothing that could run is dropped.

Each statement gets one verdict:

``"destroys"``
    it destroys data that exists before the migration (rows, columns, tables, databases):
    ``reasons`` say what, ``objects`` name it, and the human types each name to approve.
``"warns"``
    it loses no rows but locks, may fail, or changes behaviour: ``warnings`` say what is
    locked or may break and the safer pattern; a plain yes/no is enough.
``"not_understood"``
    devagent could not analyse it (unknown or opaque syntax such as ``DO`` blocks and
    ``CALL``): the reason says exactly that, and the human types the statement's
    confirmation word, ``<leading keyword>-<statement number>`` (``do-3``, ``statement-2``
    when there is no keyword), so unknown SQL never passes as safe.
``None``
    nothing to report.

``Statement.destructive`` is True for "destroys" and "not_understood": both need the typed
confirmation. ``SqlAnalysis.confirmation_words`` lists every word to type, in order.

Splitting and tokens live in devagent.sql_tokens, always-true WHERE conditions in
devagent.sql_where, and row counts against the thread's database in devagent.sql_rowcount.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from devagent import sql_builtins
from devagent.sql_tokens import WS, Cursor, Name, Tok, Unparsed, scan, tokenize
from devagent.sql_where import ConditionNotUnderstood, always_true

DIALECTS = ("sqlite", "postgres")
DESTROYS, WARNS, NOT_UNDERSTOOD = "destroys", "warns", "not_understood"
FALLBACK_CONFIRMATION = "yes-destroy"
UNPARSED_REASON = "devagent could not analyse this statement: review it by hand"
_TX_REASON = "transaction control: the executor already runs the script in its own transaction"

_TX_HEADS = [[w] for w in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END", "ABORT")] + [
    ["START", "TRANSACTION"], ["PREPARE", "TRANSACTION"]]
_CREATE_FILLER = {"OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "UNLOGGED", "IF", "NOT", "EXISTS", "GLOBAL",
                  "LOCAL", "TRUSTED", "PROCEDURAL", "RECURSIVE", "CONSTRAINT", "DEFAULT"}
_TWO_WORD_KINDS = [k.split() for k in ("MATERIALIZED VIEW", "FOREIGN TABLE", "FOREIGN DATA", "TEXT SEARCH",
                                         "EVENT TRIGGER", "ACCESS METHOD", "USER MAPPING", "OPERATOR CLASS",
                                         "OPERATOR FAMILY", "OWNED BY", "DEFAULT PRIVILEGES", "LARGE OBJECT")]
_ACCESS_EXCLUSIVE = "an ACCESS EXCLUSIVE lock (blocks reads and writes)"


@dataclass(frozen=True)
class Statement:
    index: int  # 1-based
    text: str  # original[start:end], without the terminating ';'
    start: int
    end: int
    kind: str
    verdict: str | None  # "destroys" | "warns" | "not_understood" | None
    reasons: tuple[str, ...]  # everything to show: what it destroys, then the warnings
    warnings: tuple[str, ...]  # locks, failures, behaviour changes (each with the safer pattern)
    objects: tuple[str, ...]  # what it destroys: tables, "table.column", databases, ...
    confirmation_words: tuple[str, ...]  # what the human types for this statement
    parse_error: str | None

    @property
    def destructive(self) -> bool:
        return self.verdict in (DESTROYS, NOT_UNDERSTOOD)

    @property
    def targets(self) -> tuple[str, ...]:  # the earlier name of objects
        return self.objects


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
    def confirmation_words(self) -> list[str]:
        """Every name the human must type to approve: one per destroyed object, one per
        statement devagent could not analyse."""
        return list(dict.fromkeys(w for s in self.statements if s.destructive for w in s.confirmation_words))

    @property
    def confirmation_word(self) -> str | None:
        if not self.destructive:
            return None
        words = self.confirmation_words
        return words[0] if words else FALLBACK_CONFIRMATION

    @property
    def has_transaction_control(self) -> bool:
        # Decided from the leading keywords, not the parse, so that transaction statements
        # the analysis cannot parse (e.g. RELEASE SAVEPOINT) still count.
        return any(_is_tx(words) for s in self.statements for _, _, words in scan(s.text, self.dialect))


def analyze_sql(sql: str, dialect: str = "sqlite",
                schema: Mapping[str, Iterable[str]] | None = None) -> SqlAnalysis:
    """Analyse a migration. ``schema`` (optional) maps existing table names to their column
    names; with it, a table rebuild that copies every column is known to lose nothing."""
    if dialect not in DIALECTS:
        raise ValueError(f"unsupported dialect {dialect!r}; expected one of {DIALECTS}")
    analyser = _Analyser(dialect, schema)
    found: list[tuple[int, int, str, _Findings]] = []
    for start, end, words in scan(sql, dialect):
        end = start + len(sql[start:end].rstrip(WS))
        start = end - len(sql[start:end].lstrip(WS))
        text = sql[start:end]
        try:
            findings = analyser.statement(text, words)
        except Exception as e:  # an unexpected shape must not hide the statement
            findings = _Findings()
            findings.unparsed(f"{type(e).__name__}: {e}")
        found.append((start, end, text, findings))
    analyser.across([f for *_, f in found])
    statements = []
    for number, (start, end, text, f) in enumerate(found, start=1):
        statements.append(f.statement(number, text, start, end))
    digest = hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest()
    return SqlAnalysis(sql, dialect, digest, tuple(statements))


# --------------------------------------------------------------------------- statement kinds


def _is_tx(words: list[str]) -> bool:
    return words[:1] in _TX_HEADS or words[:2] in _TX_HEADS


def _lead(words: list[str]) -> str:
    """Human kind of a statement, from its leading keywords."""
    words = [w for w in words if w]
    if not words:
        return "UNKNOWN"
    if words[0] in ("CREATE", "ALTER", "DROP"):
        rest = [w for w in words[1:] if w not in _CREATE_FILLER]
        if rest[:2] in _TWO_WORD_KINDS:
            return " ".join([words[0]] + rest[:2])
        return " ".join([words[0]] + rest[:1])
    return " ".join(words[:2] if words[:2] in _TX_HEADS + [["RELEASE", "SAVEPOINT"]] else words[:1])


# --------------------------------------------------------------------------- findings


class _Findings:
    def __init__(self) -> None:
        self.kind = ""
        self.destroyed: list[str] = []
        self.objects: list[str] = []
        self.warnings: list[str] = []
        self.opaque: str | None = None  # why the statement could not be analysed
        self.error: str | None = None  # it could not even be read
        self.lead = ""

    def destroy(self, reason: str, *objects: str) -> None:
        self.destroyed.append(reason)
        self.objects.extend(objects)

    def warn(self, reason: str) -> None:
        self.warnings.append(reason)

    def not_understood(self, detail: str) -> None:
        self.opaque = self.opaque or detail

    def unparsed(self, error: str) -> None:
        self.kind, self.error = "UNPARSED", error
        self.not_understood(error)

    def merge(self, other: "_Findings", prefix: str = "") -> None:
        self.destroyed.extend(prefix + r for r in other.destroyed)
        self.objects.extend(other.objects)
        self.warnings.extend(prefix + w for w in other.warnings)
        if other.opaque:
            self.not_understood(other.opaque)

    def statement(self, index: int, text: str, start: int, end: int) -> Statement:
        warnings = tuple(dict.fromkeys(self.warnings))
        objects = tuple(dict.fromkeys(self.objects))
        if self.destroyed:
            verdict = DESTROYS
        elif self.opaque:
            verdict = NOT_UNDERSTOOD
        elif warnings:
            verdict = WARNS
        else:
            verdict = None
        # why it could not be analysed, when that is known (a DO block, a dblink call); a parse
        # error stays in parse_error
        why = (UNPARSED_REASON,) + ((self.opaque,) if self.error is None else ()) if self.opaque else ()
        reasons = tuple(dict.fromkeys(self.destroyed)) + why + warnings
        words: tuple[str, ...] = objects
        if self.opaque:
            lead = self.lead if self.lead.isascii() and self.lead.isalpha() else "statement"
            words = words + (f"{lead.lower()}-{index}",)
        return Statement(index, text, start, end, self.kind or "UNKNOWN", verdict, reasons, warnings, objects,
                         words, self.error)


# --------------------------------------------------------------------------- analysis


_READ_ONLY = {"SELECT", "VALUES", "TABLE", "SHOW", "SET", "RESET", "DISCARD", "LISTEN", "NOTIFY", "UNLISTEN",
              "LOAD", "CHECKPOINT", "DECLARE", "FETCH", "MOVE", "CLOSE", "PREPARE", "DEALLOCATE", "COMMENT",
              "GRANT", "REVOKE", "SECURITY", "IMPORT", "ANALYZE", "ANALYSE", "ATTACH", "DETACH", "REASSIGN"}
_OPAQUE = {"DO": "a DO block runs procedural code devagent does not analyse",
           "CALL": "CALL runs a procedure whose body devagent does not see",
           "EXECUTE": "EXECUTE runs a prepared statement devagent does not see"}
_RUNS_UNSEEN_SQL = "runs SQL that devagent does not see"
_CALLS = {
    "DBLINK_EXEC": (NOT_UNDERSTOOD, _RUNS_UNSEEN_SQL), "DBLINK": (NOT_UNDERSTOOD, _RUNS_UNSEEN_SQL),
    "DBLINK_SEND_QUERY": (NOT_UNDERSTOOD, _RUNS_UNSEEN_SQL), "QUERY_TO_XML": (NOT_UNDERSTOOD, _RUNS_UNSEEN_SQL),
    "QUERY_TO_XML_AND_XMLSCHEMA": (NOT_UNDERSTOOD, _RUNS_UNSEEN_SQL),
    "SCHEDULE": (NOT_UNDERSTOOD, "schedules SQL to run later"),
    "LOAD_EXTENSION": (NOT_UNDERSTOOD, "loads native code into the database"),
    "LO_UNLINK": (DESTROYS, "deletes a large object and its data"),
    "PG_TERMINATE_BACKEND": (WARNS, "ends another session of the database server"),
    "PG_CANCEL_BACKEND": (WARNS, "cancels another session's query"),
    "SETVAL": (WARNS, "moves a sequence: new values may collide with existing keys"),
    "PG_DROP_REPLICATION_SLOT": (WARNS, "drops a replication slot: its consumer loses its place"),
    "LO_EXPORT": (WARNS, "writes a file on the database server"),
}
# Words followed by "(" that are SQL syntax, types or constraint parts, not function calls.
_NOT_FUNCTIONS = {
    "EXISTS", "ARRAY", "ROW", "CAST", "COALESCE", "NULLIF", "GREATEST", "LEAST", "VALUES", "SELECT", "IN", "ANY",
    "ALL", "SOME", "NOT", "AND", "OR", "EXTRACT", "OVERLAY", "POSITION", "SUBSTRING", "TRIM", "TREAT", "NORMALIZE",
    "XMLCONCAT", "XMLELEMENT", "XMLEXISTS", "XMLFOREST", "XMLPARSE", "XMLPI", "XMLROOT", "XMLSERIALIZE",
    "XMLTABLE", "XMLATTRIBUTES", "XMLNAMESPACES", "JSON_ARRAY", "JSON_OBJECT", "JSON_TABLE", "JSON_VALUE",
    "JSON_QUERY", "JSON_EXISTS", "GROUPING", "CUBE", "ROLLUP", "SETS", "FILTER", "OVER", "WITHIN", "CASE", "WHEN",
    "THEN", "ELSE", "INTERVAL", "LATERAL", "ONLY", "DISTINCT", "USING", "ON", "WHERE", "FROM", "JOIN", "LIKE",
    "BETWEEN", "IS", "RETURNING", "SET", "DEFAULT", "CHECK", "UNIQUE", "PRIMARY", "KEY", "REFERENCES", "FOREIGN",
    "INCLUDE", "PARTITION", "RANGE", "LIST", "HASH", "FOR", "OF", "TABLE", "WITH", "AS", "BY", "ORDER", "GROUP",
    "HAVING", "WINDOW", "TIMESTAMP", "TIMESTAMPTZ", "TIME", "TIMETZ", "VARCHAR", "CHAR", "CHARACTER", "NUMERIC",
    "DECIMAL", "FLOAT", "BIT", "VARYING", "DOUBLE", "PRECISION", "INT", "INTEGER", "NCHAR", "NATIONAL", "UNION",
    "INTERSECT", "EXCEPT", "LIMIT", "OFFSET", "FETCH", "CURRENT", "COLLATE", "ESCAPE", "SIMILAR", "ILIKE",
    "BTREE", "GIST", "GIN", "SPGIST", "BRIN", "BLOOM", "IVFFLAT", "HNSW", "EXCLUDE", "RECURSIVE", "MATERIALIZED",
    "TABLESAMPLE", "REPEATABLE", "DO", "NOTHING", "CONFLICT", "UPDATE", "INTO", "DELETE", "INSERT", "MERGE",
    "MATCHED", "NULL", "TRUE", "FALSE", "UNNEST", "CURRENT_DATE", "LOCALTIME", "LOCALTIMESTAMP",
    "CURRENT_TIMESTAMP", "CURRENT_TIME"}
# Tokens after which `name(` is a call: operators, separators and the keywords that start an
# expression (not a table name, column list, type or alias).
_CALL_AFTER_WORDS = {"SELECT", "WHERE", "AND", "OR", "NOT", "WHEN", "THEN", "ELSE", "RETURNING", "BY", "HAVING",
                     "FROM", "JOIN", "LATERAL", "IS", "LIKE", "ILIKE", "BETWEEN", "CASE", "DISTINCT", "DEFAULT",
                     "LIMIT", "OFFSET", "ESCAPE", "USING", "ALL", "ANY", "SOME", "IN", "VALUES"}
_CALL_AFTER_PUNCT = {"(", ",", "=", "<>", "!=", ">=", "<=", "<", ">", "+", "-", "*", "/", "%", "||", "^", "|",
                     "&", "~", "!", "=>", "#", "@", "?"}
# Statements that evaluate expressions when they run (a CREATE TABLE only with AS …).
_EXPRESSION_LEADS = {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "WITH", "TABLE", "ALTER",
                     "EXPLAIN", "COPY"}


def _runs_expressions(lead: str, text: str, toks: list[Tok]) -> bool:
    if lead in _EXPRESSION_LEADS:
        return True
    if lead != "CREATE":
        return False
    top = [t.up for t in toks if t.kind == "w" and t.depth == 0][:12]
    if "INDEX" in top[:4]:
        return True  # an expression index evaluates its expression over every row
    return ("TABLE" in top[:4] or "MATERIALIZED" in top[:4]) and any(
        t.kind == "w" and t.depth == 0 and t.up == "AS" for t in toks)


def _call_position(before: Tok | None) -> bool:
    if before is None:
        return False
    if before.kind == "w":
        return before.up in _CALL_AFTER_WORDS
    return before.kind == "p" and before.up in _CALL_AFTER_PUNCT


_STATEMENT_STARTS = {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "VALUES", "TABLE", "REPLACE",
                     "CREATE", "EXECUTE", "DECLARE"}
_COLUMN_CONSTRAINT_WORDS = {"CONSTRAINT", "NOT", "NULL", "DEFAULT", "PRIMARY", "UNIQUE", "CHECK", "REFERENCES",
                            "GENERATED", "COLLATE", "AS", "ON", "DEFERRABLE", "INITIALLY", "COMPRESSION", "STORAGE"}
_TABLE_CONSTRAINT_WORDS = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "EXCLUDE"}
# Defaults PostgreSQL evaluates once for ADD COLUMN (no table rewrite).
_STABLE_DEFAULTS = {"NOW", "CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "LOCALTIMESTAMP", "LOCALTIME",
                    "TRANSACTION_TIMESTAMP", "STATEMENT_TIMESTAMP", "CURRENT_USER", "SESSION_USER", "CURRENT_ROLE",
                    "USER", "TRUE", "FALSE", "NULL", "ARRAY", "INTERVAL", "DATE", "TIMESTAMP", "TIME",
                    "TIMESTAMPTZ", "JSONB", "JSON", "TEXT", "INTEGER", "INT", "BIGINT", "NUMERIC", "BOOLEAN",
                    "VARCHAR", "CHARACTER", "VARYING", "WITH", "WITHOUT", "ZONE", "DOUBLE", "PRECISION",
                    "CURRENT_SETTING", "LOWER", "UPPER", "COALESCE", "CAST", "JSONB_BUILD_OBJECT",
                    "JSON_BUILD_OBJECT", "JSONB_BUILD_ARRAY", "TO_JSONB", "MAKE_INTERVAL", "TO_TIMESTAMP",
                    "CONCAT", "DECIMAL", "REAL", "FLOAT", "SMALLINT", "CHAR", "BIT", "TIMETZ"}
_SERIAL = {"SERIAL", "BIGSERIAL", "SMALLSERIAL", "SERIAL2", "SERIAL4", "SERIAL8"}
# DROP … CASCADE of these can take table columns (and their data) with it.
_CASCADE_SAFE = {"INDEX", "TRIGGER", "RULE", "POLICY", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE",
                 "ROLE", "USER", "GROUP", "PUBLICATION", "SUBSCRIPTION", "EVENT TRIGGER", "STATISTICS"}
_DROP_KINDS = ["ACCESS METHOD", "AGGREGATE", "CAST", "COLLATION", "CONVERSION", "DATABASE", "DOMAIN",
               "EVENT TRIGGER", "EXTENSION", "FOREIGN DATA WRAPPER", "FOREIGN TABLE", "FUNCTION", "GROUP", "INDEX",
               "LANGUAGE", "PROCEDURAL LANGUAGE", "MATERIALIZED VIEW", "OPERATOR CLASS", "OPERATOR FAMILY",
               "OPERATOR", "OWNED BY", "POLICY", "PROCEDURE", "PUBLICATION", "ROLE", "ROUTINE", "RULE", "SCHEMA",
               "SEQUENCE", "SERVER", "STATISTICS", "SUBSCRIPTION", "TABLE", "TABLESPACE",
               "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER",
               "TEXT SEARCH TEMPLATE", "TRANSFORM", "TRIGGER", "TYPE", "USER MAPPING", "USER", "VIEW"]
_SQLITE_DROP_KINDS = {"TABLE", "VIEW", "INDEX", "TRIGGER"}
_SQLITE_SCHEMA_TABLES = {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}


class _Analyser:
    def __init__(self, dialect: str, schema: Mapping[str, Iterable[str]] | None) -> None:
        self.dialect = dialect
        self.pg = dialect == "postgres"
        self.schema = {k.lower(): [c.lower() for c in v] for k, v in (schema or {}).items()}
        # Tables this migration created (plain CREATE TABLE, so they held nothing before it):
        # dropping or locking them loses and blocks nothing that existed.
        self.created: set[str] = set()
        self.path_changed = False
        self.number = 0  # index of the statement being analysed
        self.nested = False  # analysing a statement inside another (no cross-statement facts)
        # What the table-rebuild check needs, in order: (statement index, event, details...).
        self.events: list[tuple] = []
        # Functions and procedures this migration creates: name -> whether their body (shown on
        # the screen) is SQL that destroys nothing, so that calling them later in it is harmless.
        self.routines: dict[str, bool] = {}

    # ---- one statement

    def statement(self, text: str, words: list[str]) -> _Findings:
        f = _Findings()
        f.kind = _lead(words)
        f.lead = next((w for w in words if w), "")
        if _is_tx(words):
            f.warn(_TX_REASON)
            self.number += 1
            return f
        try:
            head = words[0] if words else ""
            if head and not (head in _OPAQUE or head in _READ_ONLY or (
                    head.isascii() and head.isalpha() and hasattr(self, "do_" + head.lower()))):
                raise Unparsed(f"unknown statement {head[:40]}")  # before the cost of reading it all
            if self.pg and words[:1] == ["CREATE"] and ("FUNCTION" in words[1:5] or "PROCEDURE" in words[1:5]):
                self.routine(text)
            if not self.by_words([w for w in words if w], f):
                toks = tokenize(text, self.dialect)
                if not toks:
                    raise Unparsed("no statement found")
                self.dispatch(Cursor(text, toks, self.dialect), f)
                self.calls(text, toks, f)
        except Unparsed as e:
            f.unparsed(str(e))
        self.number += 1
        return f

    def by_words(self, words: list[str], f: _Findings) -> bool:
        """Statements whose keywords alone decide the verdict (definitions of functions, views,
        operators, privileges, comments) are not read token by token: most of a real migration's
        bytes are function bodies and view queries, which cannot destroy data when created."""
        if not words:
            return False
        head, rest = words[0], words[1:]
        if head == "CREATE":
            kinds = [w for w in rest if w not in _CREATE_FILLER]
            # CREATE TABLE … AS and CREATE MATERIALIZED VIEW run their query now
            return bool(kinds) and kinds[0] not in ("TABLE", "INDEX", "TRIGGER", "RULE", "MATERIALIZED")
        if head == "ALTER" and self.pg and rest and rest[0] not in ("TABLE", "FOREIGN", "MATERIALIZED", "TYPE",
                                                                    "DOMAIN"):
            self.alter_other(rest, f)
            return True
        return head in ("COMMENT", "GRANT", "REVOKE", "SECURITY") and self.pg

    def sub(self, text: str) -> _Findings:
        """Findings for a statement nested in another (CTE, trigger or rule body, EXPLAIN ANALYZE)."""
        f = _Findings()
        toks = tokenize(text, self.dialect)
        if not toks:
            raise Unparsed("empty statement")
        inner = _Analyser(self.dialect, None)
        inner.path_changed = inner.nested = True
        inner.dispatch(Cursor(text, toks, self.dialect), f)
        return f

    def dispatch(self, c: Cursor, f: _Findings) -> None:
        head = c.up()
        if c.ts[0].kind == "p" and c.ts[0].up == "(":  # (SELECT …) UNION …
            inner, _ = c.inner(c.ts[0])
            f.merge(self.sub(inner))
            return
        if c.ts[0].kind != "w":
            raise Unparsed("does not start with a keyword")
        handler = getattr(self, "do_" + head.lower(), None) if head.isascii() and head.isalpha() else None
        if handler is not None:
            handler(c, f)
        elif head in _OPAQUE:
            f.not_understood(_OPAQUE[head])
        elif head in _READ_ONLY:
            self.read_only(c, f)
        else:
            raise Unparsed(f"unknown statement {head[:40]}")

    def calls(self, text: str, toks: list[Tok], f: _Findings) -> None:
        """Built-in functions that destroy data or run SQL devagent does not see, wherever they
        are called (a SELECT that calls them is not harmless)."""
        runs_now = self.pg and _runs_expressions(f.lead, text, toks)
        for k, t in enumerate(toks[:-1]):
            if toks[k + 1].up != "(" or t.kind not in "wq":
                continue
            if t.kind == "q" or t.up not in _CALLS:
                if runs_now:
                    self.unknown_call(text, toks, k, f)
                continue
            if k >= 2 and toks[k - 1].up == "." and toks[k - 2].up not in ("PG_CATALOG", "PUBLIC", "CRON"):
                if runs_now:  # another schema's function of the same name: still unknown code
                    self.unknown_call(text, toks, k, f)
                continue
            verdict, reason = _CALLS[t.up]
            call = _one_line(text[t.start:toks[toks[k + 1].mate].end], 60)
            if verdict == DESTROYS:
                f.destroy(f"{call} {reason}", call)
            elif verdict == WARNS:
                f.warn(f"{call} {reason}")
            else:
                f.not_understood(f"{call} {reason}")

    def unknown_call(self, text: str, toks: list[Tok], k: int, f: _Findings) -> None:
        """A call of a function that is neither built in nor created harmless by this migration
        runs code the screen does not show (a PL/pgSQL function may do anything): not understood."""
        t = toks[k]
        qualified = k >= 2 and toks[k - 1].up == "." and toks[k - 2].kind in "wq"
        before = toks[k - 3] if qualified and k >= 3 else (toks[k - 1] if k >= 1 and not qualified else None)
        if not _call_position(before) or (t.kind == "w" and t.up in _NOT_FUNCTIONS):
            return
        raw = text[t.start:t.end]
        name = raw[1:-1].replace('""', '"') if t.kind == "q" else raw.lower()
        schema = text[toks[k - 2].start:toks[k - 2].end].strip('"').lower() if qualified else None
        if schema in (None, "pg_catalog", "information_schema") and (
                name in sql_builtins.POSTGRES or name in sql_builtins.EXTENSIONS):
            return
        if schema in (None, "public") and self.routines.get(name):
            return
        call = _one_line(text[(toks[k - 2] if qualified else t).start:toks[toks[k + 1].mate].end], 60)
        if name in self.routines:
            f.not_understood(f"{call} calls a function this migration creates, whose body devagent cannot vouch "
                             "for (not SQL, or it does more than read and insert)")
        else:
            f.not_understood(f"{call} calls a function of the database that devagent does not see: it may do "
                             "anything")

    def routine(self, text: str) -> None:
        """Remember a function or procedure the migration creates, and whether its body is harmless."""
        try:
            toks = tokenize(text, self.dialect)
            c = Cursor(text, toks, self.dialect)
            while not c.done() and not (c.ts[c.i].kind == "w" and c.up() in ("FUNCTION", "PROCEDURE")):
                c.i += 1
            c.i += 1
            name = c.name("routine name").show.split(".")[-1]
        except Unparsed:
            return
        name = name if any(t.kind == "q" for t in toks[:c.i]) else name.lower()
        language = next((text[toks[k + 1].start:toks[k + 1].end].strip("'\"").lower()
                         for k, t in enumerate(toks[:-1]) if t.depth == 0 and t.up == "LANGUAGE"), None)
        body = None
        atomic = next((k for k, t in enumerate(toks[1:], 1) if t.up == "ATOMIC" and toks[k - 1].up == "BEGIN"), None)
        ends = [k for k, t in enumerate(toks) if t.up == "END" and t.depth == 0]
        if atomic is not None and ends and ends[-1] > atomic:
            body = text[toks[atomic].end:toks[ends[-1]].start]
        else:
            quoted = next((toks[k + 1] for k, t in enumerate(toks[:-1])
                           if t.depth == 0 and t.up == "AS" and toks[k + 1].kind in "$s"), None)
            if quoted is not None:
                raw = text[quoted.start:quoted.end]
                if quoted.kind == "$":
                    tag = raw[:raw.index("$", 1) + 1]
                    body = raw[len(tag):-len(tag)]
                else:
                    body = raw[1:-1].replace("''", "'")
        self.routines[name] = language == "sql" and body is not None and self.body_harmless(body)

    def body_harmless(self, body: str) -> bool:
        """Whether each statement of a SQL function body destroys nothing and is understood."""
        for start, end, _words in scan(body, self.dialect):
            piece = body[start:end].strip(WS)
            if not piece:
                continue
            f = _Findings()
            try:
                toks = tokenize(piece, self.dialect)
                inner = _Analyser(self.dialect, None)
                inner.path_changed = inner.nested = True
                inner.routines = {k: v for k, v in self.routines.items() if v}
                inner.dispatch(Cursor(piece, toks, self.dialect), f)
                f.lead = next((t.up for t in toks if t.kind == "w"), "")
                inner.calls(piece, toks, f)
            except (Unparsed, Exception):
                return False
            if f.destroyed or f.opaque:
                return False
        return True

    def read_only(self, c: Cursor, f: _Findings) -> None:
        head = c.up()
        if head == "SET" and not self.pg:
            raise Unparsed("SQLite has no SET statement")
        if head in ("SET", "RESET") and "SEARCH_PATH" in c.words()[:4]:
            self.path_changed = True  # names may now resolve to other tables than the ones created here

    # ---- read and write

    def do_with(self, c: Cursor, f: _Findings) -> None:
        c.i += 1
        c.accept("RECURSIVE")
        while True:
            c.name("common table expression name")
            if c.up() == "(":
                c.i += 2  # the column list: in the top-level tokens, "(" is followed by its ")"
            if not c.accept("AS"):
                raise Unparsed("expected AS in WITH")
            c.accept("NOT")
            c.accept("MATERIALIZED")
            if c.up() != "(":
                raise Unparsed("expected ( in WITH")
            body, _ = c.inner(c.ts[c.i])
            f.merge(self.sub(body))
            c.i += 2
            while c.up() in ("SEARCH", "CYCLE"):  # SEARCH/CYCLE clauses run up to the next ',' or the body
                while not c.done() and c.up() not in (",",) and c.up() not in _STATEMENT_STARTS:
                    c.i += 1
            if not c.accept(","):
                break
        if c.done():
            raise Unparsed("WITH without a statement")
        main = self.sub(c.rest())
        f.merge(main)
        f.kind = main.kind or f.kind

    def do_select(self, c: Cursor, f: _Findings) -> None:
        f.kind = "SELECT"

    def do_explain(self, c: Cursor, f: _Findings) -> None:
        f.kind = "EXPLAIN"
        options = [w for t in c.ts[:4] if t.kind == "p" and t.up == "(" for w in
                   tokenize(c.inner(t)[0], self.dialect) if w.kind == "w"]
        analyze = {"ANALYZE", "ANALYSE"} & ({t.up for t in options} | set(c.words()[:4]))
        if not analyze:
            return
        for k, t in enumerate(c.ts[1:], start=1):
            if t.kind == "w" and t.up in _STATEMENT_STARTS:
                c.i = k
                f.merge(self.sub(c.rest()), "EXPLAIN ANALYZE runs it: ")
                return
        raise Unparsed("EXPLAIN ANALYZE without a statement")

    def do_delete(self, c: Cursor, f: _Findings) -> None:
        f.kind = "DELETE"
        c.i += 1
        if not c.accept("FROM"):
            raise Unparsed("expected FROM after DELETE")
        c.accept("ONLY")
        table = c.name("table name")
        where = self.where(c, f, ("RETURNING", "ORDER", "LIMIT"))
        if self.schema_table(table, f, "DELETE"):
            return
        if where is None:
            self.lose_rows(f, table, f"DELETE without WHERE removes every row of {table.show}")
        elif where:
            self.lose_rows(f, table,
                           f"DELETE … WHERE {where} is true for every row: removes every row of {table.show}")

    def do_update(self, c: Cursor, f: _Findings) -> None:
        f.kind = "UPDATE"
        c.i += 1
        replace = False
        if c.accept("OR"):
            replace = c.up() == "REPLACE"
            c.i += 1
        c.accept("ONLY")
        table = c.name("table name")
        while not c.done() and c.up() != "SET":
            c.i += 1
        if not c.accept("SET"):
            raise Unparsed("expected SET in UPDATE")
        columns = []
        for part in Cursor(c.text, c.toks, c.dialect, self.clause(c, ("FROM", "WHERE", "RETURNING", "ORDER",
                                                                           "LIMIT"))).split():
            if part.ts and part.ts[0].kind in "wq":
                columns.append(part.name("column").show)
            elif part.ts and part.ts[0].up == "(":
                columns.append(part.inner(part.ts[0])[0].strip())
        where = self.where(c, f, ("RETURNING", "ORDER", "LIMIT"))
        if self.schema_table(table, f, "UPDATE"):
            return
        cols = ", ".join(columns) or "columns"
        if where is None:
            self.lose_rows(f, table, f"UPDATE without WHERE overwrites {cols} in every row of {table.show}")
        elif where:
            self.lose_rows(f, table, f"UPDATE … WHERE {where} is true for every row: overwrites {cols} in every "
                                     f"row of {table.show}")
        if replace:
            f.destroy(f"UPDATE OR REPLACE deletes every other row of {table.show} that then conflicts on a "
                      f"unique key", table.show)

    def clause(self, c: Cursor, stops: tuple[str, ...]) -> list[Tok]:
        start = c.i
        while not c.done() and not (c.ts[c.i].kind == "w" and c.up() in stops):
            c.i += 1
        return c.ts[start:c.i]

    def where(self, c: Cursor, f: _Findings, stops: tuple[str, ...]) -> str | None:
        """None without WHERE; "" for a WHERE that is not always true; else the condition."""
        while not c.done() and c.up() != "WHERE":
            c.i += 1
        if not c.accept("WHERE"):
            return None
        if c.accept("CURRENT", "OF"):
            return ""
        cond = self.clause(c, stops)
        if not cond:
            raise Unparsed("empty WHERE")
        text = c.text[cond[0].start:cond[-1].end]
        try:
            return _one_line(text) if always_true(text, self.dialect) else ""
        except ConditionNotUnderstood:
            f.not_understood("devagent could not read the WHERE condition")
            return ""

    def lose_rows(self, f: _Findings, table: Name, reason: str) -> None:
        if self.new_table(table):
            f.warn(f"{reason} (created by this migration: no earlier rows)")
        else:
            f.destroy(reason, table.show)

    def schema_table(self, table: Name, f: _Findings, verb: str) -> bool:
        if self.pg or table.key.split(".")[-1] not in _SQLITE_SCHEMA_TABLES:
            return False
        f.destroy(f"{verb} on {table.show} edits the database schema directly: a wrong edit corrupts the "
                  f"database", table.show)
        return True

    def do_insert(self, c: Cursor, f: _Findings) -> None:
        f.kind = "INSERT"
        c.i += 1
        replace = plain = False
        if c.accept("OR"):
            if self.pg:
                raise Unparsed("INSERT OR is SQLite syntax")
            replace = c.up() == "REPLACE"
            c.i += 1
        else:
            plain = True
        self.insert(c, f, replace, plain)

    def do_replace(self, c: Cursor, f: _Findings) -> None:
        if self.pg:
            raise Unparsed("REPLACE is SQLite syntax")
        f.kind = "REPLACE"
        c.i += 1
        self.insert(c, f, True)

    def insert(self, c: Cursor, f: _Findings, replace: bool, plain: bool = False) -> None:
        if not c.accept("INTO"):
            raise Unparsed("expected INTO")
        table = c.name("table name")
        if self.schema_table(table, f, "INSERT"):
            return
        if replace:
            self.lose_rows(f, table, f"{'REPLACE' if f.kind == 'REPLACE' else 'INSERT OR REPLACE'} deletes every "
                                     f"existing row of {table.show} that conflicts on a unique key (the whole row, "
                                     f"not only the columns given)")
        self.copy_event(c, table, plain)

    def do_merge(self, c: Cursor, f: _Findings) -> None:
        f.kind = "MERGE"
        c.i += 1
        if not c.accept("INTO"):
            raise Unparsed("expected INTO after MERGE")
        c.accept("ONLY")
        table = c.name("table name")
        while not c.done() and c.up() != "ON":
            c.i += 1
        if not c.accept("ON"):
            raise Unparsed("expected ON in MERGE")
        cond = self.clause(c, ("WHEN",))
        everything = False
        if cond:
            text = c.text[cond[0].start:cond[-1].end]
            try:
                everything = always_true(text, self.dialect)
            except ConditionNotUnderstood:
                f.not_understood("devagent could not read the MERGE condition")
        for part in self.whens(c):
            matched = part[:2] == ["WHEN", "MATCHED"]
            by_source = part[:5] == ["WHEN", "NOT", "MATCHED", "BY", "SOURCE"]
            action = part[part.index("THEN") + 1:part.index("THEN") + 2] if "THEN" in part else []
            if action == ["DELETE"] and (matched or by_source):
                which = "matched by the source" if matched else "that have no match in the source"
                self.lose_rows(f, table, f"MERGE deletes the rows of {table.show} {which}")
            elif action == ["UPDATE"] and matched and everything:
                self.lose_rows(f, table, f"MERGE … ON {_one_line(text)} matches every row: overwrites every row "
                                         f"of {table.show}")

    def whens(self, c: Cursor) -> list[list[str]]:
        parts: list[list[str]] = []
        for t in c.ts[c.i:]:
            if t.kind == "w" and t.up == "WHEN":
                parts.append([])
            if parts:
                parts[-1].append(t.up if t.kind == "w" else "")
        return parts

    def do_truncate(self, c: Cursor, f: _Findings) -> None:
        f.kind = "TRUNCATE"
        c.i += 1
        c.accept("TABLE")
        cascade = "CASCADE" in c.words()
        for part in c.split():
            part.accept("ONLY")
            if part.done():
                raise Unparsed("expected a table name")
            table = part.name("table name")
            self.lose_rows(f, table, f"TRUNCATE removes every row of {table.show}"
                           + (" and of every table with a foreign key to it (CASCADE)" if cascade else ""))

    def do_copy(self, c: Cursor, f: _Findings) -> None:
        f.kind = "COPY"
        if c.up(1) == "(":
            f.merge(self.sub(c.inner(c.ts[1])[0]))
        if "PROGRAM" in c.words():
            f.warn("COPY … PROGRAM runs a shell command on the database server")

    def do_pragma(self, c: Cursor, f: _Findings) -> None:
        if self.pg:
            raise Unparsed("PRAGMA is SQLite syntax")
        f.kind = "PRAGMA"
        c.i += 1
        name = c.name("pragma name")
        setting = name.key.split(".")[-1]
        value = ""
        if c.up() in ("=", "("):
            value = c.text[c.ts[c.i].end:].strip(" \t\n\r\f\v()'\"").lower()
        if setting == "writable_schema" and value and value not in ("0", "off", "false", "no", "reset"):
            f.destroy("PRAGMA writable_schema lets later statements edit sqlite_master directly: a wrong edit "
                      "corrupts the database", "writable_schema")
        elif setting == "schema_version" and value:
            f.destroy("setting PRAGMA schema_version can corrupt the database", "schema_version")
        elif setting in ("journal_mode", "synchronous") and value in ("off", "0"):
            f.warn(f"PRAGMA {setting} = {value}: a crash during the migration can corrupt the database")

    def do_vacuum(self, c: Cursor, f: _Findings) -> None:
        f.kind = "VACUUM"
        if not self.pg:
            if "INTO" not in c.words():
                f.warn("VACUUM rebuilds the whole database file, locking it against writes (and reads) "
                       "while it runs")
            return
        options = c.words()
        if c.up(1) == "(":
            options += [t.up for t in tokenize(c.inner(c.ts[1])[0], self.dialect) if t.kind == "w"]
        if "FULL" in options:
            f.kind = "VACUUM FULL"
            what = self.names_after(c, skip={"VACUUM", "FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE"})
            if not all(self.new_table(n) for n in what) or not what:
                on = ", ".join(n.show for n in what) or "every table"
                f.warn(f"VACUUM FULL rewrites {on} under {_ACCESS_EXCLUSIVE}: use plain VACUUM, or pg_repack "
                       "to compact online")

    def names_after(self, c: Cursor, skip: set[str]) -> list[Name]:
        k = 1
        while k < len(c.ts) and ((c.ts[k].kind == "w" and c.ts[k].up in skip) or c.ts[k].up in ("(", ")")):
            k += 1
        out = []
        for part in Cursor(c.text, c.toks, c.dialect, c.ts[k:]).split():
            if part.ts and part.ts[0].kind in "wq":
                out.append(part.name())
        return out

    def do_reindex(self, c: Cursor, f: _Findings) -> None:
        f.kind = "REINDEX"
        if not self.pg:
            return
        words = c.words()
        options = [t.up for t in tokenize(c.inner(c.ts[1])[0], self.dialect) if t.kind == "w"] \
            if c.up(1) == "(" else []
        if "CONCURRENTLY" in words or "CONCURRENTLY" in options:
            return
        what = next((w for w in words[1:] if w in ("INDEX", "TABLE", "SCHEMA", "DATABASE", "SYSTEM")), "")
        f.warn(f"REINDEX {what.lower()} without CONCURRENTLY blocks writes to the table (and reads that use its "
               "indexes) while it rebuilds: use REINDEX … CONCURRENTLY (alone in its migration)")

    def do_cluster(self, c: Cursor, f: _Findings) -> None:
        f.kind = "CLUSTER"
        if not self.pg:
            raise Unparsed("CLUSTER is PostgreSQL syntax")
        what = self.names_after(c, skip={"CLUSTER", "VERBOSE"})
        if what and all(self.new_table(n) for n in what):
            return
        on = what[0].show if what else "every previously clustered table"
        f.warn(f"CLUSTER rewrites {on} under {_ACCESS_EXCLUSIVE} for as long as it takes: pg_repack reorders "
               "rows online")

    def do_lock(self, c: Cursor, f: _Findings) -> None:
        f.kind = "LOCK TABLE"
        if not self.pg:
            raise Unparsed("LOCK is PostgreSQL syntax")
        words = c.words()
        mode = "ACCESS EXCLUSIVE"
        if "IN" in words and "MODE" in words:
            mode = " ".join(words[words.index("IN") + 1:words.index("MODE")])
        tables = self.names_after(c, skip={"LOCK", "TABLE", "ONLY"})
        on = ", ".join(t.show for t in tables if t.show.upper() != "IN") or "the table"
        f.warn(f"LOCK TABLE holds {mode} on {on} until the migration commits, blocking other sessions: keep the "
               "migration short and SET lock_timeout first")

    def do_refresh(self, c: Cursor, f: _Findings) -> None:
        f.kind = "REFRESH MATERIALIZED VIEW"
        if "CONCURRENTLY" not in c.words():
            f.warn(f"REFRESH MATERIALIZED VIEW without CONCURRENTLY takes {_ACCESS_EXCLUSIVE} on the view while it "
                   "runs: use REFRESH … CONCURRENTLY (needs a unique index)")

    # ---- CREATE

    def do_create(self, c: Cursor, f: _Findings) -> None:
        c.i += 1
        c.skip_any("OR", "REPLACE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL")
        if c.at("UNIQUE", "INDEX") or c.at("INDEX"):
            self.create_index(c, f)
        elif c.at("TABLE"):
            c.i += 1
            exists = c.accept("IF", "NOT", "EXISTS")
            table = c.name("table name")
            f.kind = "CREATE TABLE"
            if not exists:  # it did not exist before: whatever it holds, this migration put there
                self.created.add(table.key)
                self.event("create", table.key)
        elif c.at("TRIGGER") and not self.pg:
            self.create_sqlite_trigger(c, f)
        elif c.at("RULE"):
            self.create_rule(c, f)

    def create_index(self, c: Cursor, f: _Findings) -> None:
        unique = c.accept("UNIQUE")
        c.accept("INDEX")
        f.kind = "CREATE UNIQUE INDEX" if unique else "CREATE INDEX"
        concurrently = c.accept("CONCURRENTLY")
        while not c.done() and c.up() != "ON":
            c.i += 1
        if not c.accept("ON"):
            raise Unparsed("expected ON in CREATE INDEX")
        c.accept("ONLY")
        table = c.name("table name")
        if self.new_table(table):
            return
        if self.pg and not concurrently:
            f.warn(f"CREATE INDEX without CONCURRENTLY locks writes to {table.show} on PostgreSQL while it builds: "
                   "use CREATE INDEX CONCURRENTLY (alone in its migration)")
        if unique:
            cols = c.inner(c.ts[c.i])[0].strip() if c.up() == "(" else ""
            if not cols and c.up() == "USING" and c.up(2) == "(":
                cols = c.inner(c.ts[c.i + 2])[0].strip()
            f.warn(f"CREATE UNIQUE INDEX fails if {table.show} already has duplicate values in ({_one_line(cols)}): "
                   "look for them first (GROUP BY those columns HAVING count(*) > 1) and resolve them")

    def create_sqlite_trigger(self, c: Cursor, f: _Findings) -> None:
        f.kind = "CREATE TRIGGER"
        c.accept("TRIGGER")
        c.accept("IF", "NOT", "EXISTS")
        trigger = c.name("trigger name")
        begin = next((k for k, t in enumerate(c.ts) if t.kind == "w" and t.up == "BEGIN"), None)
        if begin is None or c.ts[-1].up != "END":
            raise Unparsed("a trigger body runs from BEGIN to END")
        body = c.text[c.ts[begin].end:c.ts[-1].start]
        for stmt in _split_simple(body, self.dialect):
            f.merge(self.sub(stmt), f"each time trigger {trigger.show} fires, ")

    def create_rule(self, c: Cursor, f: _Findings) -> None:
        f.kind = "CREATE RULE"
        c.accept("RULE")
        rule = c.name("rule name")
        words = c.words()
        if "DO" not in words:
            raise Unparsed("expected DO in CREATE RULE")
        k = next(k for k, t in enumerate(c.ts) if t.kind == "w" and t.up == "DO")
        k += 1
        instead = k < len(c.ts) and c.ts[k].up == "INSTEAD"
        if k < len(c.ts) and c.ts[k].up in ("ALSO", "INSTEAD"):
            k += 1
        if k >= len(c.ts):
            raise Unparsed("expected the rule's action")
        event = words[words.index("ON") + 1] if "ON" in words else "?"
        if c.ts[k].up == "NOTHING":
            if instead and event in ("INSERT", "UPDATE", "DELETE"):
                f.warn(f"rule {rule.show}: DO INSTEAD NOTHING silently discards every {event} from now on")
            return
        body = c.inner(c.ts[k])[0] if c.ts[k].up == "(" else c.text[c.ts[k].start:]
        for stmt in _split_simple(body, self.dialect):
            f.merge(self.sub(stmt), f"on each {event}, rule {rule.show} runs: ")
        if instead:
            f.warn(f"rule {rule.show}: DO INSTEAD replaces every {event} with the rule's commands from now on")

    # ---- DROP

    def do_drop(self, c: Cursor, f: _Findings) -> None:
        c.i += 1
        kind = next((k for k in _DROP_KINDS if c.at(*k.split())), None)
        if kind is None or (not self.pg and kind not in _SQLITE_DROP_KINDS):
            raise Unparsed(f"unknown DROP {c.up()[:40]}")
        c.i += len(kind.split())
        f.kind = f"DROP {kind}"
        concurrently = c.accept("CONCURRENTLY")
        c.accept("IF", "EXISTS")
        words = c.words()
        cascade = "CASCADE" in words
        if kind == "OWNED BY":
            roles = ", ".join(n.show for n in self.list_names(c))
            f.destroy(f"DROP OWNED BY drops every object owned by {roles}, tables and their rows included",
                      *[n.show for n in self.list_names(Cursor(c.text, c.toks, c.dialect, c.ts[c.i:]))])
            return
        if kind in ("TABLE", "FOREIGN TABLE", "MATERIALIZED VIEW", "VIEW", "INDEX", "SEQUENCE", "SCHEMA",
                    "DATABASE", "TYPE", "DOMAIN", "EXTENSION", "ROLE", "USER", "GROUP", "TABLESPACE"):
            names = self.list_names(c)
        else:  # functions (with their argument types), triggers and rules (ON table), casts, …
            shown = _one_line(c.text[c.ts[c.i].start:c.ts[-1].end] if not c.done() else "", 120)
            shown = re.sub(r"(?i)\s+(CASCADE|RESTRICT)$", "", shown)
            first = c.name(f"{kind.lower()} name").show if not c.done() and c.ts[c.i].kind in "wq" else shown
            names = [Name(shown, first)]
        if not names:
            raise Unparsed(f"DROP {kind} without a name")
        dependents = " (CASCADE also drops the objects that depend on it)" if cascade else ""
        for name in names:
            self.drop_one(kind, name, f, cascade, concurrently, c.rest(), dependents)

    def list_names(self, c: Cursor) -> list[Name]:
        out = []
        for part in Cursor(c.text, c.toks, c.dialect, [t for t in c.ts[c.i:] if not (
                t.kind == "w" and t.up in ("CASCADE", "RESTRICT"))]).split():
            if part.ts and part.ts[0].kind in "wq":
                if part.ts[0].up == "WITH" and self.pg:  # DROP DATABASE d WITH (FORCE)
                    continue
                out.append(part.name())
        return out

    def drop_one(self, kind: str, name: Name, f: _Findings, cascade: bool, concurrently: bool,
                 words_text: str, dependents: str) -> None:
        show = name.show
        if kind == "TABLE":
            if self.new_table(name):
                f.warn(f"drops table {show}, which this migration created: no earlier rows are lost{dependents}")
            else:
                reason = f"drops table {show} and all its rows{dependents}"
                f.destroy(reason, show)
                self.event("drop", name, f, reason)
            self.created.discard(name.key)
        elif kind == "DATABASE":
            force = " and FORCE ends its open sessions" if re.search(r"(?i)\bFORCE\b", words_text) else ""
            f.destroy(f"drops database {show} and everything in it{force}", show)
        elif kind == "SCHEMA":
            if cascade:
                f.destroy(f"drops schema {show} and every table in it, rows included (CASCADE)", show)
            else:
                f.warn(f"drops schema {show} (fails unless it is empty)")
        elif kind == "INDEX":
            lock = "" if (concurrently or not self.pg) else (
                f"; without CONCURRENTLY it takes {_ACCESS_EXCLUSIVE} on its table: use DROP INDEX CONCURRENTLY "
                "(alone in its migration)")
            f.warn(f"drops index {show}: queries that used it may slow down, and a unique index stops enforcing "
                   f"uniqueness{lock}")
        elif kind == "TRIGGER":
            f.warn(f"drops trigger {show}: what it did on each write stops")
        elif kind == "FOREIGN TABLE":
            f.warn(f"drops foreign table {show}: only the local definition goes (the remote data stays); "
                   "queries on it break")
        elif kind in ("VIEW", "MATERIALIZED VIEW"):
            f.warn(f"drops {kind.lower()} {show}: queries on it break (its rows are derived from other tables)"
                   + dependents)
        elif kind == "SEQUENCE":
            f.warn(f"drops sequence {show}: its current value is lost and defaults that use it fail{dependents}")
        elif cascade and kind not in _CASCADE_SAFE:
            # for kinds read without a name list, key holds the bare name (no argument types)
            word = name.key if kind not in ("SCHEMA", "TYPE", "DOMAIN", "EXTENSION", "TABLESPACE") else show
            f.destroy(f"drops {kind.lower()} {show}; CASCADE also drops every object that depends on it, which "
                      "can include table columns and their data", word or show)
        else:
            f.warn(f"drops {kind.lower()} {show}: whatever uses it breaks{dependents}")

    # ---- ALTER

    def do_alter(self, c: Cursor, f: _Findings) -> None:
        c.i += 1
        if c.at("TABLE") or c.at("FOREIGN", "TABLE") or c.at("MATERIALIZED", "VIEW"):
            foreign = c.accept("FOREIGN")
            view = c.accept("MATERIALIZED", "VIEW")
            if not view:
                c.accept("TABLE")
            objkind = "FOREIGN TABLE" if foreign else "MATERIALIZED VIEW" if view else "TABLE"
            if c.at("ALL", "IN"):
                f.kind = f"ALTER {objkind} ALL IN TABLESPACE"
                f.warn(f"moves every table of a tablespace: rewrites each under {_ACCESS_EXCLUSIVE}")
                return
            c.accept("IF", "EXISTS")
            c.accept("ONLY")
            table = c.name("table name")
            if c.up() == "*":
                c.i += 1
            if c.done():
                raise Unparsed(f"ALTER {objkind} without an action")
            self.alter_table(c, f, table, objkind)
        elif c.at("TYPE"):
            self.alter_type(c, f)
        elif c.at("DOMAIN"):
            self.alter_domain(c, f)
        else:
            self.alter_other(c.words(), f)

    def alter_table(self, c: Cursor, f: _Findings, table: Name, objkind: str) -> None:
        labels: list[str] = []
        new = self.new_table(table)
        quiet = _Findings()  # lock warnings for a table created by this migration are not shown
        for action in c.split():
            if action.done():
                raise Unparsed("empty ALTER TABLE action")
            label = self.alter_action(action, quiet if new else f, table, objkind)
            labels.append(label)
        if new:
            for reason in quiet.destroyed:
                f.warn(f"{reason} (in a table this migration created: no earlier data)")
            if quiet.opaque:
                f.not_understood(quiet.opaque)
        f.kind = " ".join([f"ALTER {objkind}", ", ".join(dict.fromkeys(labels))]).strip()

    def alter_action(self, a: Cursor, f: _Findings, table: Name, objkind: str) -> str:
        t, pg, foreign = table.show, self.pg, objkind == "FOREIGN TABLE"
        if a.accept("ADD"):
            if a.up() in _TABLE_CONSTRAINT_WORDS:
                return self.add_constraint(a, f, table)
            a.accept("COLUMN")
            a.accept("IF", "NOT", "EXISTS")
            self.add_column(a, f, table, foreign)
            return "ADD COLUMN"
        if a.accept("DROP"):
            if a.accept("CONSTRAINT"):
                a.accept("IF", "EXISTS")
                name = a.name("constraint name").show
                f.warn(f"drops constraint {name} of {t}: what it enforced is no longer guaranteed")
                return "DROP CONSTRAINT"
            a.accept("COLUMN")
            a.accept("IF", "EXISTS")
            column = f"{t}.{a.name('column name').show}"
            cascade = " (CASCADE also drops the views and constraints that use it)" if "CASCADE" in a.words() else ""
            if foreign:
                f.warn(f"removes column {column} from the foreign table's definition; the remote data stays{cascade}")
            else:
                f.destroy(f"drops column {column} and its data{cascade}", column)
            return "DROP COLUMN"
        if a.accept("ALTER"):
            if a.accept("CONSTRAINT"):
                return "ALTER CONSTRAINT"
            a.accept("COLUMN")
            column = f"{t}.{a.name('column name').show}"
            if not pg:
                f.warn("SQLite has no ALTER COLUMN: this statement fails")
                return "ALTER COLUMN"
            if a.accept("TYPE") or a.accept("SET", "DATA", "TYPE"):
                to = _one_line(a.text[a.ts[a.i].start:a.ts[-1].end]) if not a.done() else "?"
                if foreign:
                    f.warn(f"changes how {column} is read from the remote source (the remote data is untouched)")
                else:
                    f.destroy(f"changes the type of {column} to {to}: may lose data (rounding, truncation, the USING "
                              f"conversion) and rewrites {t} under {_ACCESS_EXCLUSIVE}", column)
                return "ALTER COLUMN TYPE"
            if a.accept("SET", "NOT", "NULL"):
                if not foreign:
                    f.warn(f"SET NOT NULL on {column} scans {t} under {_ACCESS_EXCLUSIVE} and fails if it holds "
                           f"NULLs: add CHECK ({column.split('.')[-1]} IS NOT NULL) NOT VALID, VALIDATE it in a "
                           "later migration, then SET NOT NULL")
                return "SET NOT NULL"
            if a.accept("DROP", "NOT", "NULL"):
                f.warn(f"{column} may now hold NULLs: readers that assume it never does can break")
                return "DROP NOT NULL"
            if a.at("SET") or a.at("DROP") or a.at("RESET") or a.at("ADD") or a.at("RESTART") or a.at("OPTIONS"):
                return f"ALTER COLUMN {a.up()}"
            raise Unparsed(f"unknown ALTER COLUMN action {a.up()[:40]}")
        if a.accept("RENAME"):
            if a.accept("CONSTRAINT"):
                return "RENAME CONSTRAINT"
            if a.accept("TO"):
                to = a.name("new name")
                f.warn(f"renames {objkind.lower()} {t} to {to.show}: readers of the old name break")
                self.event("rename", table.key, to.key)
                if table.key in self.created:
                    self.created.discard(table.key)
                    self.created.add(to.key)
                else:
                    self.created.discard(to.key)
                return "RENAME"
            a.accept("COLUMN")
            old = a.name("column name")
            if not a.accept("TO"):
                raise Unparsed("expected TO in RENAME COLUMN")
            f.warn(f"renames column {t}.{old.show} to {a.name('new name').show}: readers of the old name break")
            return "RENAME COLUMN"
        if a.accept("VALIDATE", "CONSTRAINT"):
            return "VALIDATE CONSTRAINT"
        if a.at("ENABLE") or a.at("DISABLE") or a.at("FORCE") or a.at("NO", "FORCE"):
            words = a.words()
            if words[0] == "DISABLE" and "TRIGGER" in words:
                f.warn(f"disables triggers on {t}: what they enforce (foreign keys with ALL) stops until re-enabled")
            return " ".join(w for w in words[:2] if w in ("ENABLE", "DISABLE", "FORCE", "NO", "ROW", "TRIGGER",
                                                           "RULE"))
        if a.accept("DETACH", "PARTITION"):
            part = a.name("partition name").show
            if not ({"CONCURRENTLY", "FINALIZE"} & set(a.words())):
                f.warn(f"DETACH PARTITION {part} takes {_ACCESS_EXCLUSIVE} on {t}: use DETACH PARTITION … "
                       "CONCURRENTLY (alone in its migration)")
            return "DETACH PARTITION"
        if a.accept("ATTACH", "PARTITION"):
            part = a.name("partition name").show
            f.warn(f"ATTACH PARTITION scans {part} to check its bounds while holding locks: add a matching CHECK "
                   "constraint to it first (NOT VALID, then VALIDATE) so the scan is skipped")
            return "ATTACH PARTITION"
        if a.at("SET"):
            words = a.words()
            if words[1:2] in (["TABLESPACE"], ["LOGGED"], ["UNLOGGED"]) or words[1:3] == ["ACCESS", "METHOD"]:
                what = " ".join(words[1:3] if words[1] == "ACCESS" else words[1:2])
                crash = "; an UNLOGGED table is emptied by a crash" if words[1] == "UNLOGGED" else ""
                f.warn(f"SET {what} rewrites {t} under {_ACCESS_EXCLUSIVE}{crash}")
            return "SET " + (words[1] if len(words) > 1 else "")
        if a.up() in ("OWNER", "CLUSTER", "RESET", "INHERIT", "NO", "OF", "NOT", "REPLICA", "OPTIONS", "DEPENDS"):
            return a.up()
        raise Unparsed(f"unknown ALTER {objkind} action {a.up()[:40]}")

    def add_column(self, a: Cursor, f: _Findings, table: Name, foreign: bool) -> None:
        name = a.name("column name")
        column, t = f"{table.show}.{name.show}", table.show
        words = [tk.up if tk.kind == "w" else tk.up for tk in a.ts[a.i:]]
        type_words = []
        for w in words:
            if w in _COLUMN_CONSTRAINT_WORDS:
                break
            type_words.append(w)
        not_null = any(words[k:k + 2] == ["NOT", "NULL"] for k in range(len(words))) or "PRIMARY" in words
        default = self.default_expr(a)
        generated = "GENERATED" in words or (not self.pg and "AS" in words)
        identity = "IDENTITY" in words
        stored = generated and "STORED" in words
        serial = bool(_SERIAL & set(type_words))
        if foreign:
            return
        if not self.pg:
            if stored:
                f.warn(f"SQLite cannot ADD a STORED generated column ({column}): this statement fails")
            elif "PRIMARY" in words or "UNIQUE" in words:
                f.warn(f"SQLite cannot ADD a PRIMARY KEY or UNIQUE column ({column}): this statement fails")
            elif not_null and (default is None or default.upper() == "NULL") and not generated:
                f.warn(f"SQLite rejects NOT NULL column {column} without a non-NULL DEFAULT: this statement fails")
            elif default is not None and (default.startswith("(") or default.upper().startswith("CURRENT_")):
                f.warn(f"SQLite rejects a non-constant DEFAULT in ADD COLUMN ({column}): this statement fails")
            return
        if stored:
            f.warn(f"stored generated column {column}: PostgreSQL rewrites {t} under {_ACCESS_EXCLUSIVE}; add a "
                   "plain column and backfill it in batches instead")
        elif identity or serial:
            f.warn(f"{column} is filled from a sequence: PostgreSQL rewrites {t} under {_ACCESS_EXCLUSIVE}; add "
                   "it nullable, backfill in batches, then set the default")
        elif default is not None and _volatile(default):
            f.warn(f"DEFAULT {default} may be volatile: PostgreSQL rewrites {t} under {_ACCESS_EXCLUSIVE}; add the "
                   "column without it, backfill in batches, then SET DEFAULT")
        elif not_null and default is None:
            f.warn(f"adds NOT NULL column {column} without DEFAULT: fails if {t} has rows; give it a DEFAULT, or add "
                   "it nullable, backfill, then SET NOT NULL")
        if "PRIMARY" in words or "UNIQUE" in words:
            f.warn(f"the {'PRIMARY KEY' if 'PRIMARY' in words else 'UNIQUE'} column {column} builds a unique index "
                   f"on {t} under {_ACCESS_EXCLUSIVE} (fails on duplicates): create the index CONCURRENTLY first, then "
                   "ADD CONSTRAINT … USING INDEX")
        if "REFERENCES" in words:
            f.warn(f"the foreign key on {column} locks {t} and the referenced table against writes while it is "
                   "checked: add the column, then ADD CONSTRAINT … NOT VALID and VALIDATE CONSTRAINT later")
        if "CHECK" in words and not stored:
            f.warn(f"the CHECK on {column} is verified against every row of {t} under {_ACCESS_EXCLUSIVE}: add "
                   "it as a NOT VALID constraint and VALIDATE it later")

    def default_expr(self, a: Cursor) -> str | None:
        for k in range(a.i, len(a.ts)):
            if a.ts[k].kind == "w" and a.ts[k].up == "DEFAULT":
                end = k + 1
                while end < len(a.ts) and not (a.ts[end].kind == "w" and a.ts[end].up in _COLUMN_CONSTRAINT_WORDS
                                               and a.ts[end].up not in ("NULL",)):
                    end += 1
                if end == k + 1:
                    return ""
                return _one_line(a.text[a.ts[k + 1].start:a.ts[end - 1].end])
        return None

    def add_constraint(self, a: Cursor, f: _Findings, table: Name) -> str:
        t = table.show
        if a.accept("CONSTRAINT"):
            a.name("constraint name")
        words = a.words()
        kind = a.up()
        if not self.pg:
            f.warn("SQLite cannot add a constraint with ALTER TABLE: this statement fails")
            return "ADD CONSTRAINT"
        not_valid = any(words[k:k + 2] == ["NOT", "VALID"] for k in range(len(words)))
        if kind in ("PRIMARY", "UNIQUE"):
            if "USING" in words and "INDEX" in words:
                return "ADD CONSTRAINT"
            what = "PRIMARY KEY" if kind == "PRIMARY" else "UNIQUE"
            f.warn(f"ADD {what} builds a unique index on {t} under {_ACCESS_EXCLUSIVE} and fails on duplicates: "
                   f"CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … {what} USING INDEX")
        elif kind == "FOREIGN" and not not_valid:
            ref = words[words.index("REFERENCES") + 1].lower() if "REFERENCES" in words[:-1] else "the referenced table"
            f.warn(f"ADD FOREIGN KEY checks every row of {t} while locking {t} and {ref} against writes: add it "
                   "NOT VALID, then VALIDATE CONSTRAINT in a later migration")
        elif kind == "CHECK" and not not_valid:
            f.warn(f"ADD CHECK scans every row of {t} under {_ACCESS_EXCLUSIVE} and fails on rows that violate it: "
                   "add it NOT VALID, then VALIDATE CONSTRAINT in a later migration")
        elif kind == "EXCLUDE":
            f.warn(f"ADD EXCLUDE builds an index on {t} under {_ACCESS_EXCLUSIVE} and fails on conflicting rows")
        elif kind not in ("FOREIGN", "CHECK"):
            raise Unparsed(f"unknown constraint {kind[:40]}")
        return "ADD CONSTRAINT"

    def alter_type(self, c: Cursor, f: _Findings) -> None:
        c.accept("TYPE")
        name = c.name("type name")
        f.kind = "ALTER TYPE"
        if not self.pg:
            raise Unparsed("ALTER TYPE is PostgreSQL syntax")
        if c.at("ADD", "VALUE"):
            f.kind = "ALTER TYPE ADD VALUE"
            return
        if c.at("RENAME"):
            what = "value" if c.at("RENAME", "VALUE") else "attribute" if c.at("RENAME", "ATTRIBUTE") else "type"
            f.warn(f"renames a {what} of type {name.show}: code that uses the old name breaks")
            return
        if c.at("OWNER") or c.at("SET"):
            return
        for action in c.split():
            cascade = "CASCADE" in action.words()
            if action.accept("ADD", "ATTRIBUTE"):
                continue
            if action.accept("DROP", "ATTRIBUTE"):
                action.accept("IF", "EXISTS")
                attr = f"{name.show}.{action.name('attribute name').show}"
                if cascade:
                    f.destroy(f"drops attribute {attr} from every stored value of type {name.show}, in every table "
                              "column of that type (CASCADE)", attr)
                else:
                    f.warn(f"drops attribute {attr}: fails while a table column uses type {name.show}")
                continue
            if action.accept("ALTER", "ATTRIBUTE"):
                attr = f"{name.show}.{action.name('attribute name').show}"
                if cascade:
                    f.destroy(f"converts attribute {attr} in every stored value of type {name.show} (CASCADE): may "
                              "lose data", attr)
                else:
                    f.warn(f"changes the type of attribute {attr}: fails while a table column uses type {name.show}")
                continue
            raise Unparsed(f"unknown ALTER TYPE action {action.up()[:40]}")

    def alter_domain(self, c: Cursor, f: _Findings) -> None:
        c.accept("DOMAIN")
        name = c.name("domain name")
        f.kind = "ALTER DOMAIN"
        words = c.words()
        not_valid = any(words[k:k + 2] == ["NOT", "VALID"] for k in range(len(words)))
        if c.at("ADD") and not not_valid:
            f.warn(f"ADD CONSTRAINT on domain {name.show} checks every column of that type under lock and fails on "
                   "violating rows: add it NOT VALID, then VALIDATE CONSTRAINT later")
        elif c.at("SET", "NOT", "NULL"):
            f.warn(f"SET NOT NULL on domain {name.show} checks every column of that type and fails on NULLs")
        elif c.at("DROP", "NOT", "NULL"):
            f.warn(f"domain {name.show} may now hold NULLs: readers that assume it never does can break")
        elif c.at("DROP", "CONSTRAINT"):
            f.warn(f"drops a constraint of domain {name.show}: what it enforced is no longer guaranteed")
        elif c.at("RENAME"):
            f.warn(f"renames domain {name.show} (or its constraint): code that uses the old name breaks")

    def alter_other(self, words: list[str], f: _Findings) -> None:
        if not self.pg or not words:
            raise Unparsed("unknown ALTER statement")
        if words[0] == "SYSTEM":
            f.warn("ALTER SYSTEM changes the configuration of the whole database server")
        elif words[0] in ("ROLE", "USER") and "SET" in words:
            f.warn("changes the settings of every future session of this role")
        elif words[0] == "SEQUENCE" and "RESTART" in words:
            f.warn("restarts the sequence: new values may collide with existing keys")
        elif "RENAME" in words and words[0] not in ("INDEX", "FUNCTION", "PROCEDURE", "ROUTINE", "AGGREGATE"):
            f.warn(f"renames a {words[0].lower()}: code that uses the old name breaks")
        elif words[0] == "INDEX" and "TABLESPACE" in words:
            f.warn(f"moving an index rebuilds it under {_ACCESS_EXCLUSIVE}")

    # ---- helpers across statements

    def new_table(self, table: Name) -> bool:
        return not self.path_changed and table.key in self.created

    def event(self, *details: object) -> None:
        if not self.nested:
            self.events.append((self.number, *details))

    def copy_event(self, c: Cursor, target: Name, plain: bool) -> None:
        """Record INSERT INTO target [(cols)] SELECT cols FROM source when it copies every row
        unchanged in number: no WHERE, no DISTINCT, no grouping, no join, no OR IGNORE."""
        if not plain:
            return
        if c.up() == "(":
            c.i += 2
        if not c.accept("SELECT") or c.at("DISTINCT"):
            return
        first = c.i
        while not c.done() and c.up() != "FROM":
            c.i += 1
        if c.i == first or not c.accept("FROM"):
            return
        items = c.ts[first:c.i - 1]
        source = c.name()
        if not c.done():
            return  # WHERE, JOIN, GROUP BY, LIMIT, a second table: not a plain copy
        if len(items) == 1 and items[0].up == "*":
            copied: set[str] | None = None
        else:
            inner = [t for t in c.toks if items[0].start <= t.start and t.end <= items[-1].end]
            copied = {Cursor(c.text, c.toks, c.dialect, [t]).name().key.split(".")[-1]
                      for t in inner if t.kind in "wq"}
        self.event("copy", target.key, source.key, copied)

    def across(self, findings: list[_Findings]) -> None:
        """Checks that need the whole migration: table rebuilds, enum values used in one transaction."""
        self.rebuilds()
        if len(findings) > 1:
            for f in findings:
                if f.kind == "ALTER TYPE ADD VALUE":
                    f.warn("ALTER TYPE … ADD VALUE runs inside the migration's transaction: PostgreSQL before 12 "
                           "refuses that, and the new value cannot be used before the migration commits; put it in "
                           "a migration of its own")

    def rebuilds(self) -> None:
        """Recognise the SQLite table rebuild that Atlas, Alembic batch mode and Django generate:
        create a new table, copy the rows of the old one into it, drop the old one, rename the
        new one to the old name (or: rename the old one away, create the new one under its name,
        copy, drop the renamed old one). The rows are kept, so the DROP is reported as a rebuild,
        not as a table drop; columns the copy leaves out are named as lost."""
        events = self.events
        for number, what, *details in events:
            if what != "drop":
                continue
            name, f, reason = details
            old = name.key
            for n_copy, w_copy, *copy in events:
                if w_copy != "copy" or n_copy >= number or copy[1] != old:
                    continue
                new, copied = copy[0], copy[2]
                created = any(w == "create" and d[0] == new and n < n_copy for n, w, *d in events)
                # no other write to the new table between its creation and the copy
                renamed_back = any(w == "rename" and d == [new, old] and n > number for n, w, *d in events)
                renamed_away = next((d[0] for n, w, *d in events
                                     if w == "rename" and d[1] == old and d[0] == new and n < n_copy), None)
                if not created or not (renamed_back or renamed_away):
                    continue
                original = renamed_away or old
                known = self.schema.get(original) or self.schema.get(original.split(".")[-1])
                f.destroyed.remove(reason)
                f.objects.remove(name.show)
                if copied is None:
                    lost: list[str] = []
                elif known is not None:
                    lost = [col for col in known if col not in copied]
                else:
                    kept = ", ".join(sorted(copied))
                    f.destroy(f"rebuilds table {name.show} keeping only the columns the copy names ({kept}); "
                              f"devagent does not know the columns of {name.show}, so any other column and its "
                              "data is lost", name.show)
                    break
                if lost:
                    f.destroy(f"rebuilds table {name.show} without {'column' if len(lost) == 1 else 'columns'} {', '.join(lost)}: their data is lost",
                              *[f"{name.show}.{col}" for col in lost])
                else:
                    f.warn(f"rebuilds table {name.show} (rows copied into a new table that takes its name): no rows "
                           f"or columns are lost; the old table's indexes and triggers go with it unless the "
                           "migration creates them again")
                break


def _volatile(default: str) -> bool:
    """Whether a DEFAULT may be volatile (PostgreSQL then rewrites the table to fill it):
    any call of a function not known to be stable or immutable counts."""
    toks = tokenize(default, "postgres")
    return any(t.kind == "w" and toks[k + 1].up == "(" and t.up not in _STABLE_DEFAULTS
               for k, t in enumerate(toks[:-1]))


def _split_simple(body: str, dialect: str) -> list[str]:
    """Statements of a trigger or rule body: cut at top-level ';' outside quotes."""
    toks = tokenize(body, dialect)
    out, start = [], 0
    for t in toks:
        if t.depth == 0 and t.kind == "p" and t.up == ";":
            if body[start:t.start].strip(WS):
                out.append(body[start:t.start].strip(WS))
            start = t.end
    if body[start:].strip(WS):
        out.append(body[start:].strip(WS))
    return out


def _one_line(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"
