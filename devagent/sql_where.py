"""Is a WHERE (or MERGE ON) condition true for every row?

``DELETE FROM t WHERE 1=1`` removes every row as surely as a DELETE without WHERE; so do
``WHERE true``, ``WHERE 1``, ``WHERE 'a'='a'``, ``WHERE x = x`` and ``… OR 1=1``. This module
decides that from the condition alone: constant sub-expressions are evaluated, and a comparison
of an expression with itself counts as true (it is, for every row where the expression is not
NULL). It answers "always true" only when sure; "not always true" means it found no proof,
and the row count (devagent.sql_rowcount) is the second line of defence.
"""
from __future__ import annotations

import logging

import sqlglot
from sqlglot import exp

logging.getLogger("sqlglot").setLevel(logging.CRITICAL)

MAX_CONDITION = 20_000
_UNKNOWN = object()
_NULL = object()
# Functions whose result differs between two calls: f() = f() is not a tautology.
_VOLATILE = {"RAND", "RANDOM", "RANDOMBLOB", "NEXTVAL", "CLOCK_TIMESTAMP", "TIMEOFDAY", "GEN_RANDOM_UUID",
             "UUID_GENERATE_V4", "UUID_GENERATE_V1", "CHANGES", "TOTAL_CHANGES", "LAST_INSERT_ROWID"}


class ConditionNotUnderstood(Exception):
    """The condition could not be parsed, so nothing can be said about it."""


def always_true(condition: str, dialect: str) -> bool:
    """True if the SQL boolean expression holds for every row (NULL columns aside)."""
    if len(condition) > MAX_CONDITION:
        raise ConditionNotUnderstood(f"condition longer than {MAX_CONDITION} characters")
    try:
        node = sqlglot.parse_one(condition, read=dialect)
    except Exception as e:  # any parser failure: the caller reports the statement as not understood
        raise ConditionNotUnderstood(type(e).__name__) from None
    if node is None:
        raise ConditionNotUnderstood("empty condition")
    return _true(node, dialect)


def _true(node: exp.Expression, dialect: str) -> bool:
    if isinstance(node, exp.Paren):
        return _true(node.this, dialect)
    if isinstance(node, exp.Or):  # flattened: a long OR chain must not recurse once per term
        terms = list(node.flatten())
        return any(_true(t, dialect) for t in terms) or _complementary(terms)
    if isinstance(node, exp.And):
        return all(_true(t, dialect) for t in node.flatten())
    if isinstance(node, exp.Not) and _false(node.this, dialect):
        return True
    if isinstance(node, (exp.EQ, exp.GTE, exp.LTE, exp.NullSafeEQ)) and _same(node.this, node.expression):
        return True
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null) and node.args.get("negate"):
        return _value(node.this, dialect) not in (_UNKNOWN, _NULL)
    if isinstance(node, exp.Exists) and _constant_row(node.this):
        return True
    return _truthy(_value(node, dialect), dialect) is True


def _constant_row(query: exp.Expression) -> bool:
    """A SELECT without FROM, WHERE, HAVING or LIMIT: it always returns exactly one row."""
    return isinstance(query, exp.Select) and not any(
        query.args.get(k) for k in ("from", "from_", "where", "having", "limit", "group"))


def _false(node: exp.Expression, dialect: str) -> bool:
    if isinstance(node, exp.Paren):
        return _false(node.this, dialect)
    if isinstance(node, (exp.NEQ, exp.GT, exp.LT)) and _same(node.this, node.expression):
        return True
    return _truthy(_value(node, dialect), dialect) is False


def _complementary(terms: list[exp.Expression]) -> bool:
    """x IS NULL OR … OR x IS NOT NULL (either spelling of the negation)."""
    def is_null(n):
        plain = isinstance(n, exp.Is) and isinstance(n.expression, exp.Null) and not n.args.get("negate")
        return n.this if plain else None

    def is_not_null(n):
        if isinstance(n, exp.Is) and isinstance(n.expression, exp.Null) and n.args.get("negate"):
            return n.this
        return is_null(n.this) if isinstance(n, exp.Not) else None

    nulls = [x for x in map(is_null, terms) if x is not None]
    not_nulls = [y for y in map(is_not_null, terms) if y is not None]
    return any(_same(x, y) for x in nulls[:50] for y in not_nulls[:50])


def _same(a: exp.Expression, b: exp.Expression) -> bool:
    if a != b:  # sqlglot compares expression trees structurally
        return False
    for func in a.find_all(exp.Func):
        name = (func.sql_name() if not isinstance(func, exp.Anonymous) else func.name).upper()
        if name in _VOLATILE or isinstance(func, exp.Rand):
            return False
    return not any(True for _ in a.find_all(exp.Subquery, exp.Select))


def _value(node: exp.Expression, dialect: str):
    """The constant value of node, _NULL, or _UNKNOWN when it depends on a row or a function."""
    if isinstance(node, exp.Paren):
        return _value(node.this, dialect)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return _NULL
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        try:
            return float(node.this)
        except ValueError:
            return _UNKNOWN
    if isinstance(node, exp.Neg):
        v = _value(node.this, dialect)
        return -v if isinstance(v, float) else _UNKNOWN
    if isinstance(node, exp.Cast):
        return _value(node.this, dialect)
    if isinstance(node, exp.Not):
        v = _truthy(_value(node.this, dialect), dialect)
        return _UNKNOWN if v is None else not v
    if isinstance(node, (exp.And, exp.Or)):
        values = [_truthy(_value(t, dialect), dialect) for t in node.flatten()]
        if isinstance(node, exp.Or):
            return True if True in values else (False if all(v is False for v in values) else _UNKNOWN)
        return False if False in values else (True if all(v is True for v in values) else _UNKNOWN)
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        v = _value(node.this, dialect)
        if v is _UNKNOWN:
            return _UNKNOWN
        return (v is not _NULL) if node.args.get("negate") else (v is _NULL)
    if isinstance(node, exp.In) and node.expressions and not node.args.get("query"):
        v = _value(node.this, dialect)
        items = [_value(e, dialect) for e in node.expressions]
        if v is _UNKNOWN or _UNKNOWN in items or v is _NULL:
            return _UNKNOWN
        return any(_compare(exp.EQ, v, i) is True for i in items) or _UNKNOWN
    if isinstance(node, exp.Between):
        v, lo, hi = (_value(node.args.get(k), dialect) for k in ("this", "low", "high"))
        a, b = _compare(exp.GTE, v, lo), _compare(exp.LTE, v, hi)
        return (a and b) if isinstance(a, bool) and isinstance(b, bool) else _UNKNOWN
    if isinstance(node, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)):
        return _compare(type(node), _value(node.this, dialect), _value(node.expression, dialect))
    return _UNKNOWN


def _compare(op, a, b):
    if a is _UNKNOWN or b is _UNKNOWN or a is _NULL or b is _NULL or type(a) is not type(b):
        return _UNKNOWN
    return {exp.EQ: a == b, exp.NEQ: a != b, exp.GT: a > b, exp.GTE: a >= b,
            exp.LT: a < b, exp.LTE: a <= b}[op]


def _truthy(v, dialect: str):
    """How WHERE reads a constant: True, False, or None (unknown / NULL)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, float):
        return v != 0
    if isinstance(v, str) and dialect == "sqlite":  # SQLite reads the numeric prefix of a string
        digits = ""
        for ch in v.strip():
            if ch.isdigit() or (ch in "+-." and not digits.strip("+-.")):
                digits += ch
            else:
                break
        try:
            return float(digits) != 0
        except ValueError:
            return False
    if isinstance(v, str):  # PostgreSQL reads an untyped literal as a boolean input
        word = v.strip().lower()
        if word in ("t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"):
            return True
        if word in ("f", "fa", "fal", "fals", "false", "n", "no", "of", "off", "0"):
            return False
    return None
