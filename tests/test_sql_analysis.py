import hashlib
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devagent.sql_analysis import FALLBACK_CONFIRMATION, analyze_sql


def only(sql, dialect="sqlite"):
    analysis = analyze_sql(sql, dialect)
    assert len(analysis.statements) == 1, analysis.statements
    return analysis.statements[0]


def assert_exact_slices(analysis):
    previous_end = 0
    for number, stmt in enumerate(analysis.statements, start=1):
        assert stmt.index == number
        assert analysis.sql[stmt.start:stmt.end] == stmt.text
        assert previous_end <= stmt.start < stmt.end
        previous_end = stmt.end


def test_mixed_script():
    sql = "CREATE TABLE t(id int); DROP TABLE users; DELETE FROM orders; UPDATE a SET x=1 WHERE id=2;"
    analysis = analyze_sql(sql)
    assert [s.text for s in analysis.statements] == [
        "CREATE TABLE t(id int)", "DROP TABLE users", "DELETE FROM orders", "UPDATE a SET x=1 WHERE id=2"]
    assert_exact_slices(analysis)
    assert [s.kind for s in analysis.statements] == ["CREATE TABLE", "DROP TABLE", "DELETE", "UPDATE"]
    assert [s.destructive for s in analysis.statements] == [False, True, True, False]
    assert analysis.destructive == analysis.statements[1:3]
    assert "users" in analysis.statements[1].targets
    assert "orders" in analysis.statements[2].targets
    assert "every row of orders" in analysis.statements[2].reasons[0]
    assert analysis.confirmation_word == "users"
    assert not analysis.has_transaction_control
    assert all(s.parse_error is None for s in analysis.statements)


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_drop_column(dialect):
    stmt = only("ALTER TABLE users DROP COLUMN email", dialect)
    assert stmt.destructive and stmt.kind == "ALTER TABLE DROP COLUMN"
    assert stmt.targets == ("users.email",)


def test_drop_kinds_and_cascade():
    sql = "DROP VIEW v; DROP INDEX i; DROP SCHEMA s CASCADE; DROP TABLE IF EXISTS a, b"
    analysis = analyze_sql(sql, "postgres")
    assert all(s.destructive for s in analysis.statements)
    assert [s.kind for s in analysis.statements] == ["DROP VIEW", "DROP INDEX", "DROP SCHEMA", "DROP TABLE"]
    assert "CASCADE" in analysis.statements[2].reasons[0]
    assert analysis.statements[3].targets == ("a", "b")


def test_truncate():
    stmt = only("TRUNCATE TABLE audit_log", "postgres")
    assert stmt.destructive and stmt.kind == "TRUNCATE" and stmt.targets == ("audit_log",)


def test_update_without_where_is_destructive():
    stmt = only("UPDATE accounts SET balance = 0")
    assert stmt.destructive and stmt.targets == ("accounts",)
    assert "UPDATE without WHERE" in stmt.reasons[0]
    assert not only("DELETE FROM accounts WHERE id = 3").destructive


def test_delete_hidden_in_cte_is_found():
    stmt = only("WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone", "postgres")
    assert stmt.destructive and stmt.targets == ("t",)


def test_alter_column_type_on_postgres():
    stmt = only("ALTER TABLE users ALTER COLUMN age TYPE bigint", "postgres")
    assert stmt.destructive and stmt.targets == ("users.age",)
    assert not only("ALTER TABLE users ALTER COLUMN age SET DEFAULT 0", "postgres").destructive


def test_add_not_null_column_without_default_on_postgres():
    assert only("ALTER TABLE users ADD COLUMN c int NOT NULL", "postgres").destructive
    assert not only("ALTER TABLE users ADD COLUMN c int NOT NULL DEFAULT 0", "postgres").destructive
    assert not only("ALTER TABLE users ADD COLUMN c int", "postgres").destructive


def test_column_rename_without_column_keyword_on_postgres():
    stmt = only("ALTER TABLE users RENAME mail TO email", "postgres")
    assert not stmt.destructive and stmt.kind == "ALTER TABLE RENAME COLUMN"
    assert "renames column users.mail to email" in stmt.reasons[0]


def test_merge_with_delete_is_destructive():
    sql = "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE"
    assert only(sql, "postgres").targets == ("t",)


def test_rename_is_a_warning_not_destructive():
    stmt = only("ALTER TABLE users RENAME TO people")
    assert not stmt.destructive and stmt.kind == "ALTER TABLE RENAME"
    assert stmt.reasons and "renames table users to people" in stmt.reasons[0]


def test_create_index_locks_on_postgres_only():
    locking = only("CREATE INDEX idx ON users(email)", "postgres")
    assert locking.destructive and locking.kind == "CREATE INDEX"
    assert locking.reasons == ("CREATE INDEX without CONCURRENTLY locks writes to users on PostgreSQL",)
    assert not only("CREATE INDEX CONCURRENTLY idx ON users(email)", "postgres").destructive
    assert not only("CREATE INDEX idx ON users(email)", "sqlite").destructive


@pytest.mark.parametrize("sql, dialect, expected", [
    ("SELECT 'a;b'; SELECT 2", "sqlite", ["SELECT 'a;b'", "SELECT 2"]),
    ("SELECT 'it''s;'; SELECT 2", "sqlite", ["SELECT 'it''s;'", "SELECT 2"]),
    ('SELECT "we;ird" FROM t; SELECT 2', "sqlite", ['SELECT "we;ird" FROM t', "SELECT 2"]),
    ("SELECT 1 -- no; split\n; SELECT 2", "sqlite", ["SELECT 1 -- no; split", "SELECT 2"]),
    ("SELECT /* ; */ 1; SELECT 2", "sqlite", ["SELECT /* ; */ 1", "SELECT 2"]),
    ("SELECT /* a /* ; */ b */ 1; SELECT 2", "postgres", ["SELECT /* a /* ; */ b */ 1", "SELECT 2"]),
    ("SELECT $$a;b$$; SELECT 2", "postgres", ["SELECT $$a;b$$", "SELECT 2"]),
    ("SELECT $fn$ x; $$; $fn$; SELECT 2", "postgres", ["SELECT $fn$ x; $$; $fn$", "SELECT 2"]),
    ("SELECT E'\\';'; SELECT 2", "postgres", ["SELECT E'\\';'", "SELECT 2"]),
    ("SELECT [a;b] FROM t; SELECT 2", "sqlite", ["SELECT [a;b] FROM t", "SELECT 2"]),
])
def test_semicolons_inside_quotes_and_comments_do_not_split(sql, dialect, expected):
    analysis = analyze_sql(sql, dialect)
    assert [s.text for s in analysis.statements] == expected
    assert_exact_slices(analysis)


def test_function_body_in_dollar_quotes_is_one_statement():
    sql = ("CREATE FUNCTION f() RETURNS int AS $body$\nBEGIN\n  DELETE FROM t;\n  RETURN 1;\nEND\n"
           "$body$ LANGUAGE plpgsql;\nSELECT f();")
    analysis = analyze_sql(sql, "postgres")
    assert len(analysis.statements) == 2
    assert analysis.statements[0].text.endswith("LANGUAGE plpgsql")


def test_sqlite_trigger_body_is_one_statement():
    sql = ("CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n"
           "  UPDATE u SET n = CASE WHEN n > 9 THEN 0 ELSE n + 1 END;\n"
           "  DELETE FROM log WHERE id < 5;\nEND; SELECT 1")
    analysis = analyze_sql(sql)
    assert [s.text for s in analysis.statements] == [sql[:sql.rindex("END;") + 3], "SELECT 1"]
    # sqlglot does not model trigger bodies, so the trigger must not pass as safe
    assert analysis.statements[0].destructive


@pytest.mark.parametrize("sql", ["this is garbage", "DROP TABLE", "SELECT (1", "x", "DROP TABLE 'x"])
def test_garbage_is_unparsed_and_destructive(sql):
    analysis = analyze_sql(sql)
    stmt = analysis.statements[0]
    assert stmt.kind == "UNPARSED" and stmt.destructive and stmt.parse_error
    assert stmt.reasons == ("could not be parsed: review it by hand",)
    assert stmt.text == sql.strip()
    assert analysis.confirmation_word == FALLBACK_CONFIRMATION


def test_odd_ast_shapes_do_not_crash():
    # sqlglot reads this as a multi-table DELETE whose target table is missing (this=False)
    stmt = only("DELETE FROMx TABLEy")
    assert stmt.destructive and stmt.targets == ()


def test_unparsed_statement_is_kept_between_good_ones():
    analysis = analyze_sql("SELECT 1; SELEC oops; SELECT 2")
    assert [s.kind for s in analysis.statements] == ["SELECT", "UNPARSED", "SELECT"]
    assert analysis.statements[1].text == "SELEC oops"


def test_commands_sqlglot_does_not_model_are_not_analysed():
    stmt = only("VACUUM FULL users", "postgres")
    assert stmt.kind == "VACUUM" and stmt.destructive and "not analysed" in stmt.reasons[0]
    do_block = only("DO $$ BEGIN DELETE FROM t; END $$", "postgres")
    assert do_block.kind == "DO" and do_block.destructive
    assert not only("EXPLAIN SELECT 1", "postgres").destructive
    assert only("EXPLAIN ANALYZE DELETE FROM t", "postgres").destructive


@pytest.mark.parametrize("sql", ["", "   \n\t", "-- just a comment", "/* block */ ;; -- x\n;", ";"])
def test_empty_or_comment_only_has_no_statements(sql):
    analysis = analyze_sql(sql)
    assert analysis.statements == ()
    assert analysis.destructive == ()
    assert analysis.confirmation_word is None


def test_leading_comment_stays_with_its_statement():
    analysis = analyze_sql("-- remove legacy\nDROP TABLE legacy;\n")
    assert analysis.statements[0].text == "-- remove legacy\nDROP TABLE legacy"


def test_sha256_of_exact_bytes():
    sql = "DROP TABLE café;\r\n"
    assert analyze_sql(sql).sha256 == hashlib.sha256(sql.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("sql, dialect", [
    ("BEGIN; DROP TABLE x; COMMIT;", "sqlite"),
    ("SAVEPOINT a; ROLLBACK", "sqlite"),
    ("START TRANSACTION; SELECT 1", "postgres"),
    ("RELEASE SAVEPOINT a", "postgres"),
])
def test_transaction_control(sql, dialect):
    assert analyze_sql(sql, dialect).has_transaction_control


def test_transaction_statements_are_warnings():
    stmt = only("BEGIN")
    assert stmt.kind == "BEGIN" and not stmt.destructive and stmt.reasons


def test_no_transaction_control_for_plpgsql_begin():
    assert not analyze_sql("DO $$ BEGIN PERFORM 1; END $$", "postgres").has_transaction_control


def test_unknown_dialect_rejected():
    with pytest.raises(ValueError):
        analyze_sql("SELECT 1", "mysql")


# --- properties -------------------------------------------------------------------------------

names = st.sampled_from(["users", "orders", "t", "a_b", "x1"])
string_literals = st.text(alphabet="ab;' -", max_size=8).map(lambda s: "'" + s.replace("'", "''") + "'")
simple_statements = st.one_of(
    st.builds("SELECT {}".format, st.integers(0, 999)),
    st.builds("SELECT {} AS v".format, string_literals),
    st.builds("INSERT INTO {} VALUES ({})".format, names, string_literals),
    st.builds("UPDATE {} SET x = 1 WHERE id = {}".format, names, st.integers(0, 9)),
    st.builds("DELETE FROM {}".format, names),
    st.builds("DROP TABLE {}".format, names),
    st.builds("CREATE TABLE {}(id int)".format, names),
)
separators = st.sampled_from([";", "; ", ";\n", " ;\n\n", ";;", ";\t"])
dialects = st.sampled_from(["sqlite", "postgres"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(simple_statements, separators), max_size=6), dialects)
def test_generated_statements_split_exactly(parts, dialect):
    sql = "".join(stmt + sep for stmt, sep in parts)
    analysis = analyze_sql(sql, dialect)
    assert [s.text for s in analysis.statements] == [stmt for stmt, _ in parts]
    assert_exact_slices(analysis)
    for stmt in analysis.statements:
        assert stmt.parse_error is None
        assert stmt.destructive == stmt.text.startswith(("DELETE", "DROP"))


@settings(max_examples=300, deadline=None)
@given(st.text(), dialects)
def test_arbitrary_text_never_raises_and_slices_are_exact(sql, dialect):
    analysis = analyze_sql(sql, dialect)
    assert_exact_slices(analysis)
    for stmt in analysis.statements:
        assert stmt.text.strip(" \t\n\r\f\v") == stmt.text
        assert stmt.destructive or stmt.kind != "UNPARSED"
    _ = analysis.confirmation_word, analysis.has_transaction_control


soup_pieces = list("ab ;'\"-/*$\n\\[]`E(") + [
    "CREATE TRIGGER t BEGIN ", "CREATE TEMP TRIGGER ", "END", " END;", "--", "/*", "*/", "$$"]
soup = st.lists(st.sampled_from(soup_pieces), max_size=16).map("".join)


@settings(max_examples=300, deadline=None)
@given(soup, dialects)
def test_sql_punctuation_soup_never_raises(sql, dialect):
    assert_exact_slices(analyze_sql(sql, dialect))


@settings(max_examples=500, deadline=None)
@given(soup)
def test_sqlite_split_matches_sqlite3_complete_statement(sql):
    # The sqlite3 shell and executescript cut a script where sqlite3_complete() says a
    # statement ends; the statements shown for approval must be cut at the same places.
    expected, start = [], 0
    for i, ch in enumerate(sql):
        if ch == ";" and sqlite3.complete_statement(sql[start:i + 1]):
            expected.append((start, i))
            start = i + 1
    expected.append((start, len(sql)))
    pieces = [sql[s:e].strip(" \t\n\r\f\v") for s, e in expected]
    pieces = [p for p in pieces if analyze_sql(p).statements]
    assert [s.text for s in analyze_sql(sql).statements] == pieces
