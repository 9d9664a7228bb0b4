"""How many rows would each UPDATE/DELETE (and SQLite REPLACE) of a migration touch?

Counted before approval with ``SELECT count(*)`` queries that the caller runs on the
thread's database, in a read-only transaction with a short timeout (see ``sqlite_counter``
and ``POSTGRES_COUNT_SCRIPT``). The result is a hint for the screen ("deletes 1,234 of
1,240 rows of orders"), never a substitute for the typed confirmation; but a statement that
would touch every row of a non-empty table is treated as destroying data whatever its WHERE
says (``confirmation_words``).

The count query runs before the human approved anything, so it must not run anything the
human has not seen either: a condition that calls a function outside a short list of pure
built-ins (or anything else this module cannot read) is not counted.
"""
from __future__ import annotations

import re
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from devagent.sql_analysis import DESTROYS, SqlAnalysis
from devagent.sql_tokens import Cursor, Unparsed, tokenize

# Called with one SELECT count(*) query; returns the count. Raises TimeoutError when the
# database's timeout cut it short; any other exception means "could not count".
RunQuery = Callable[[str], int]

# Functions a count query may call: pure built-ins of PostgreSQL and SQLite.
_SAFE_CALLS = {"IN", "EXISTS", "ANY", "ALL", "SOME", "CAST", "NOT", "AND", "OR", "ARRAY", "ROW", "COALESCE",
               "NULLIF", "LOWER", "UPPER", "LENGTH", "CHAR_LENGTH", "ABS", "NOW", "TRIM", "SUBSTR", "SUBSTRING",
               "DATE", "DATETIME", "JULIANDAY", "STRFTIME", "DATE_TRUNC", "EXTRACT", "ROUND", "IFNULL",
               "GREATEST", "LEAST", "BETWEEN", "LIKE", "VALUES", "INTERVAL", "FROM", "WHERE", "SELECT", "ON",
               "USING", "AS", "IS", "THEN", "ELSE", "WHEN", "CASE"}

POSTGRES_COUNT_SCRIPT = (
    # What a PostgreSQL caller sends, {query} filled in: nothing it runs can write, and it
    # gives up after the timeout instead of waiting for locks or long scans.
    "BEGIN TRANSACTION READ ONLY;\n"
    "SET LOCAL statement_timeout = '{timeout_ms}ms';\n"
    "SET LOCAL lock_timeout = '{timeout_ms}ms';\n"
    "{query};\n"
    "ROLLBACK;\n"
)


@dataclass(frozen=True)
class RowCount:
    statement: int  # Statement.index
    table: str
    verb: str  # "deletes", "updates", "may replace"
    touched: int | None  # rows the statement would touch (None: not counted)
    total: int | None  # rows in the table
    problem: str | None = None  # "count timed out", "not counted: …"

    @property
    def every_row(self) -> bool:
        return self.touched is not None and self.total is not None and 0 < self.total == self.touched

    def describe(self) -> str:
        if self.problem:
            return f"{self.verb} rows of {self.table}: {self.problem}"
        if self.touched is None:
            return f"{self.verb} rows of {self.table} ({self.total:,} rows in the table)"
        return f"{self.verb} {self.touched:,} of {self.total:,} rows of {self.table}"


def count_rows(analysis: SqlAnalysis, run_query: RunQuery) -> list[RowCount]:
    """One RowCount for each top-level UPDATE, DELETE or SQLite REPLACE of the migration."""
    counts = []
    for stmt in analysis.statements:
        try:
            target = _target(stmt.text, analysis.dialect)
        except Unparsed:
            continue
        if target is None:
            continue
        verb, table, from_text, where, extra_from = target
        counts.append(_count(stmt.index, verb, table, from_text, where, extra_from, run_query, analysis.dialect))
    return counts


def confirmation_words(analysis: SqlAnalysis, counts: list[RowCount]) -> list[str]:
    """The analysis's words, plus the table of every statement that would touch every row of
    a non-empty table even though its WHERE looked bounded."""
    words = list(analysis.confirmation_words)
    flagged = {s.index for s in analysis.statements if s.verdict == DESTROYS}
    for count in counts:
        if count.every_row and count.statement not in flagged and count.table not in words:
            words.append(count.table)
    return words


def sqlite_counter(path: str, timeout_s: float = 2.0) -> RunQuery:
    """A RunQuery for a SQLite file: opened read-only (it cannot write, and cannot create the
    file), given up after timeout_s."""
    def run(query: str) -> int:
        conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        try:
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            return int(conn.execute(query).fetchone()[0])
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e) or time.monotonic() > deadline:
                raise TimeoutError("count timed out") from None
            raise
        finally:
            conn.close()
    return run


def _target(text: str, dialect: str):
    """(verb, table, FROM text, WHERE text or None, USING/FROM list or None), or None."""
    toks = tokenize(text, dialect)
    c = Cursor(text, toks, dialect)
    if c.accept("DELETE"):
        verb = "deletes"
        if not c.accept("FROM"):
            return None
        stops, extra_word = ("USING", "WHERE", "RETURNING", "ORDER", "LIMIT"), "USING"
    elif c.accept("UPDATE"):
        verb = "updates"
        if c.accept("OR"):
            c.i += 1
        stops, extra_word = ("SET",), "FROM"
    elif dialect == "sqlite" and (c.accept("REPLACE") or c.at("INSERT", "OR", "REPLACE")):
        if c.accept("INSERT"):
            c.i += 2
        if not c.accept("INTO"):
            return None
        table = c.name()
        return "may replace", table.show, table.show, None, None
    else:
        return None
    c.accept("ONLY")
    first = c.i
    table = c.name()
    while not c.done() and not (c.ts[c.i].kind == "w" and c.up() in stops):
        c.i += 1
    from_text = text[c.ts[first].start:c.ts[c.i - 1].end]
    if verb == "updates":  # skip the SET list
        while not c.done() and not (c.ts[c.i].kind == "w" and c.up() in ("FROM", "WHERE", "RETURNING")):
            c.i += 1
    extra = None
    if c.accept(extra_word):
        start = c.i
        while not c.done() and not (c.ts[c.i].kind == "w" and c.up() in ("WHERE", "RETURNING", "ORDER", "LIMIT")):
            c.i += 1
        extra = text[c.ts[start].start:c.ts[c.i - 1].end]
    where = None
    if c.accept("WHERE"):
        if c.at("CURRENT", "OF"):
            return None
        start = c.i
        while not c.done() and not (c.ts[c.i].kind == "w" and c.up() in ("RETURNING", "ORDER", "LIMIT")):
            c.i += 1
        where = text[c.ts[start].start:c.ts[c.i - 1].end]
    return verb, table.show, from_text, where, extra


def _unsafe_call(sql: str, dialect: str) -> str | None:
    """The first function a count query would call that is not a pure built-in."""
    toks = tokenize(sql, dialect)
    for k, t in enumerate(toks[:-1]):
        if toks[k + 1].up == "(" and t.kind in "wq" and t.up not in _SAFE_CALLS:
            return sql[t.start:t.end]
        if t.kind == "$":  # dollar-quoted text could hide anything from this check's reader
            return "a dollar-quoted string"
    return None


def _count(index: int, verb: str, table: str, from_text: str, where: str | None, extra: str | None,
           run_query: RunQuery, dialect: str) -> RowCount:
    condition = where
    if extra is not None:
        condition = f"EXISTS (SELECT 1 FROM {extra}" + (f" WHERE {where})" if where else ")")
    total_query = f"SELECT count(*) FROM {from_text}"
    query = total_query + (f" WHERE {condition}" if condition else "")
    try:
        # what came from the migration, not the count(*) this module adds
        unsafe = next(filter(None, (_unsafe_call(part, dialect) for part in (from_text, where, extra) if part)), None)
    except Unparsed as e:
        return RowCount(index, table, verb, None, None, f"not counted: {e}")
    if unsafe:
        return RowCount(index, table, verb, None, None, f"not counted: the condition calls {unsafe[:40]}")
    try:
        total = run_query(total_query)
        touched = None if verb == "may replace" else (total if condition is None else run_query(query))
    except TimeoutError:
        return RowCount(index, table, verb, None, None, "count timed out")
    except Exception as e:  # the count is a hint: a failure is shown, never raised
        detail = re.sub(r"\s+", " ", str(e))[:120] or type(e).__name__
        return RowCount(index, table, verb, None, None, f"not counted: {detail}")
    return RowCount(index, table, verb, touched, total)
