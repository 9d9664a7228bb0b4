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

import hashlib
import json
import re
import sqlite3
import time
import urllib.parse
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from devagent.sql_analysis import DESTROYS, SqlAnalysis, analyze_sql
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
    return [finish_count(plan, run_query) for plan in plan_counts(analysis)]


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


@dataclass(frozen=True)
class _Plan:
    """What counting one statement needs: its queries, or why it cannot be counted."""
    count: RowCount  # touched/total still unknown, or the reason it is not counted
    total_query: str | None = None
    query: str | None = None  # None: every row (no condition), or a REPLACE (not countable)


def plan_counts(analysis: SqlAnalysis) -> list[_Plan]:
    """The count queries of each top-level UPDATE, DELETE or SQLite REPLACE, not yet run."""
    plans = []
    for stmt in analysis.statements:
        try:
            target = _target(stmt.text, analysis.dialect)
        except Unparsed:
            continue
        if target is not None:
            verb, table, from_text, where, extra_from = target
            plans.append(_plan(stmt.index, verb, table, from_text, where, extra_from, analysis.dialect))
    return plans


def _plan(index: int, verb: str, table: str, from_text: str, where: str | None, extra: str | None,
          dialect: str) -> _Plan:
    condition = where
    if extra is not None:
        condition = f"EXISTS (SELECT 1 FROM {extra}" + (f" WHERE {where})" if where else ")")
    total_query = f"SELECT count(*) FROM {from_text}"
    query = total_query + f" WHERE {condition}" if condition and verb != "may replace" else None
    try:
        # what came from the migration, not the count(*) this module adds
        unsafe = next(filter(None, (_unsafe_call(part, dialect) for part in (from_text, where, extra) if part)), None)
    except Unparsed as e:
        return _Plan(RowCount(index, table, verb, None, None, f"not counted: {e}"))
    if unsafe:
        return _Plan(RowCount(index, table, verb, None, None, f"not counted: the condition calls {unsafe[:40]}"))
    return _Plan(RowCount(index, table, verb, None, None), total_query, query)


def finish_count(plan: _Plan, run_query: RunQuery) -> RowCount:
    """Run a plan's queries (total first) and say what they found; a failure is shown, never raised."""
    c = plan.count
    if plan.total_query is None:
        return c
    try:
        total = run_query(plan.total_query)
        touched = None if c.verb == "may replace" else (total if plan.query is None else run_query(plan.query))
    except TimeoutError:
        return replace(c, problem="count timed out")
    except Exception as e:  # the count is a hint: a failure is shown, never raised
        detail = re.sub(r"\s+", " ", str(e))[:120] or type(e).__name__
        return replace(c, problem=f"not counted: {detail}")
    return replace(c, touched=touched, total=total)


# --- the probe: counts (and SQLite columns) read in the thread's container before the screen ----

PROBE_MARKER = "DEVAGENT-PROBE-RESULT "
PROBE_TIMEOUT_MS = 2000
_PROBE_SCRIPT = Path(__file__).with_name("sql_probe_runner.py")


def probe_script() -> str:
    """The program the container runs (`python3 -I -S -c`), from devagent's own files."""
    return _PROBE_SCRIPT.read_text()


def probe_plan(sql: str, dialect: str) -> tuple[list[_Plan], bool]:
    """The count plans of a migration, and whether the SQLite schema is worth reading (a DROP
    TABLE that may be part of a table rebuild). ([], False): nothing to probe."""
    analysis = analyze_sql(sql, dialect)
    plans = plan_counts(analysis)
    schema = dialect == "sqlite" and any(s.kind == "DROP TABLE" for s in analysis.statements)
    return plans, schema


def probe_job(plans: list[_Plan], schema: bool) -> tuple[dict, list[str]]:
    """The job for the container (without where the database is), and its distinct queries."""
    queries = list(dict.fromkeys(q for p in plans for q in (p.total_query, p.query) if q))
    return {"timeout_ms": PROBE_TIMEOUT_MS, "queries": queries, "schema": schema}, queries


def probe_record(sql: str, dialect: str, plans: list[_Plan], queries: list[str], output: dict | None,
                 failure: str | None = None) -> dict:
    """What is stored for the call: the counts as the screen shows them, the schema read (if
    any), and the SHA-256 of the SQL they belong to."""
    results = dict(zip(queries, (output or {}).get("counts") or []))
    problem = failure or (output or {}).get("error")

    def run(query: str) -> int:
        got = results.get(query)
        if problem or got is None:
            raise RuntimeError(problem or "no answer")
        if got == "timeout":
            raise TimeoutError
        if isinstance(got, dict):
            raise RuntimeError(str(got.get("error")))
        return int(got)

    counts = [finish_count(p, run) for p in plans]
    schema = (output or {}).get("schema")
    return {"sha256": hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest(), "dialect": dialect,
            "counts": [asdict(c) for c in counts],
            "schema": schema if isinstance(schema, dict) else None}


def parse_probe_output(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.startswith(PROBE_MARKER):
            try:
                data = json.loads(line[len(PROBE_MARKER):])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def _probe_for(sql: str, probe: dict | None) -> dict | None:
    """The probe, if it was made for exactly this SQL (otherwise it says nothing about it)."""
    if not probe or probe.get("sha256") != hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest():
        return None
    return probe


def probed_counts(sql: str, probe: dict | None) -> list[RowCount]:
    probe = _probe_for(sql, probe)
    fields = {f for f in RowCount.__dataclass_fields__}
    return [RowCount(**{k: v for k, v in c.items() if k in fields}) for c in (probe or {}).get("counts") or []]


def probed_schema(sql: str, probe: dict | None) -> dict[str, list[str]] | None:
    schema = (_probe_for(sql, probe) or {}).get("schema")
    return schema if isinstance(schema, dict) else None


def probed_analysis(sql: str, dialect: str, probe: dict | None) -> SqlAnalysis:
    """The analysis the screen shows: with the columns read from the database, when known."""
    return analyze_sql(sql, dialect, schema=probed_schema(sql, probe))


def required_words(sql: str, dialect: str, probe: dict | None) -> list[str]:
    """Every name a human types to approve this SQL: what the analysis finds it destroys (with
    the database's columns, when read), plus each table it would empty row by row."""
    return confirmation_words(probed_analysis(sql, dialect, probe), probed_counts(sql, probe))
