import hashlib
import sqlite3

import re

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


def test_truncate():
    stmt = only("TRUNCATE TABLE audit_log", "postgres")
    assert stmt.destructive and stmt.kind == "TRUNCATE" and stmt.targets == ("audit_log",)


def test_update_without_where_is_destructive():
    stmt = only("UPDATE accounts SET balance = 0")
    assert stmt.destructive and stmt.targets == ("accounts",)
    assert "UPDATE without WHERE overwrites balance in every row of accounts" in stmt.reasons[0]
    assert not only("DELETE FROM accounts WHERE id = 3").destructive


def test_delete_hidden_in_cte_is_found():
    stmt = only("WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone", "postgres")
    assert stmt.destructive and stmt.targets == ("t",)


def test_column_rename_without_column_keyword_on_postgres():
    stmt = only("ALTER TABLE users RENAME mail TO email", "postgres")
    assert stmt.verdict == "warns" and stmt.kind == "ALTER TABLE RENAME COLUMN"
    assert "renames column users.mail to email" in stmt.reasons[0]


def test_rename_is_a_warning_not_destructive():
    stmt = only("ALTER TABLE users RENAME TO people")
    assert stmt.verdict == "warns" and stmt.kind == "ALTER TABLE RENAME"
    assert stmt.reasons and "renames table users to people" in stmt.reasons[0]


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
    # the body's statements are analysed: the UPDATE has no WHERE, the DELETE is bounded
    trigger = analysis.statements[0]
    assert trigger.verdict == "destroys" and trigger.objects == ("u",)
    assert trigger.reasons == ("each time trigger tr fires, UPDATE without WHERE overwrites n in every row of u",)


@pytest.mark.parametrize("sql", ["this is garbage", "DROP TABLE", "SELECT (1", "x", "DROP TABLE 'x"])
def test_garbage_is_unparsed_and_destructive(sql):
    analysis = analyze_sql(sql)
    stmt = analysis.statements[0]
    assert stmt.kind == "UNPARSED" and stmt.destructive and stmt.parse_error
    assert stmt.verdict == "not_understood" and stmt.objects == ()
    assert stmt.reasons == ("devagent could not analyse this statement: review it by hand",)
    assert stmt.text == sql.strip()
    assert analysis.confirmation_words == [sql.split()[0].lower() + "-1" if sql[0].isalpha() else "statement-1"]
    assert analysis.confirmation_word == analysis.confirmation_words[0] != FALLBACK_CONFIRMATION


def test_odd_ast_shapes_do_not_crash():
    # sqlglot reads this as a multi-table DELETE whose target table is missing (this=False)
    stmt = only("DELETE FROMx TABLEy")
    assert stmt.destructive and stmt.targets == ()


def test_unparsed_statement_is_kept_between_good_ones():
    analysis = analyze_sql("SELECT 1; SELEC oops; SELECT 2")
    assert [s.kind for s in analysis.statements] == ["SELECT", "UNPARSED", "SELECT"]
    assert analysis.statements[1].text == "SELEC oops"


def test_opaque_statements_are_not_understood_and_say_so():
    do_block = only("DO $$ BEGIN DELETE FROM t; END $$", "postgres")
    assert do_block.kind == "DO" and do_block.verdict == "not_understood" and do_block.destructive
    assert do_block.reasons == ("devagent could not analyse this statement: review it by hand",
                                "a DO block runs procedural code devagent does not analyse")
    analysis = analyze_sql("SELECT 1; CALL purge_old_rows(30)", "postgres")
    assert analysis.statements[1].verdict == "not_understood"
    assert analysis.confirmation_words == ["call-2"]
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
    created = set()
    for stmt in analysis.statements:
        assert stmt.parse_error is None
        words = stmt.text.split()
        table = words[2].split("(")[0] if len(words) > 2 else ""
        if stmt.text.startswith("CREATE TABLE"):
            created.add(table)
        # rows that existed before the migration are destroyed; a table it created held none
        assert stmt.destructive == (stmt.text.startswith(("DELETE", "DROP")) and table not in created)
        if stmt.text.startswith("DROP"):
            created.discard(table)


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


# --- verdicts by category -------------------------------------------------------------------
# (sql, dialect, objects destroyed, words that must appear in the reason)

DESTROYS = [
    # rows
    ("DELETE FROM orders", "sqlite", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE 1=1", "sqlite", ["orders"], "WHERE 1=1 is true for every row"),
    ("DELETE FROM orders WHERE true", "postgres", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE 1", "sqlite", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE '1'", "sqlite", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE 'a'='a'", "postgres", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE id = id", "postgres", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE status = 'x' OR 1=1", "sqlite", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE (2 > 1) AND NOT false", "postgres", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE 1 IN (1, 2)", "postgres", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE note IS NULL OR note IS NOT NULL", "sqlite", ["orders"], "every row"),
    ("DELETE FROM ONLY orders WHERE TRUE RETURNING id", "postgres", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE EXISTS (SELECT 1)", "postgres", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE NOT (id <> id) AND 2 BETWEEN 1 AND 3", "sqlite", ["orders"], "every row"),
    ("DELETE FROM orders WHERE 't'", "postgres", ["orders"], "every row of orders"),
    ("DELETE FROM orders WHERE 1 = 1 -- AND id = 5\n", "sqlite", ["orders"], "every row of orders"),
    ("UPDATE accounts SET balance = 0 WHERE true", "postgres", ["accounts"], "overwrites balance in every row"),
    ("UPDATE accounts SET balance = 0, owner = NULL WHERE 1 = 1", "sqlite", ["accounts"], "balance, owner"),
    ("UPDATE OR REPLACE users SET email = 'a@b'", "sqlite", ["users"], "conflicts on a unique key"),
    ("INSERT OR REPLACE INTO users (id, email) VALUES (1, 'a')", "sqlite", ["users"], "conflicts on a unique key"),
    ("REPLACE INTO users (id, email) VALUES (1, 'a')", "sqlite", ["users"], "the whole row"),
    ("TRUNCATE orders, order_lines CASCADE", "postgres", ["orders", "order_lines"], "foreign key to it"),
    ("MERGE INTO stock s USING delivery d ON s.id = d.id WHEN MATCHED THEN DELETE", "postgres", ["stock"],
     "matched by the source"),
    ("MERGE INTO stock s USING delivery d ON true WHEN MATCHED THEN UPDATE SET n = d.n", "postgres", ["stock"],
     "overwrites every row of stock"),
    ("WITH gone AS (DELETE FROM sessions WHERE 1=1 RETURNING id) SELECT count(*) FROM gone", "postgres",
     ["sessions"], "every row of sessions"),
    ("EXPLAIN ANALYZE DELETE FROM t", "postgres", ["t"], "EXPLAIN ANALYZE runs it"),
    ("COPY (DELETE FROM t RETURNING *) TO STDOUT", "postgres", ["t"], "every row of t"),
    # the SQLite schema table
    ("PRAGMA writable_schema = ON", "sqlite", ["writable_schema"], "corrupts the database"),
    ("PRAGMA writable_schema=1", "sqlite", ["writable_schema"], "sqlite_master"),
    ("UPDATE sqlite_master SET sql = 'x' WHERE name = 't'", "sqlite", ["sqlite_master"], "corrupts"),
    ("DELETE FROM sqlite_schema WHERE name = 't'", "sqlite", ["sqlite_schema"], "corrupts"),
    ("PRAGMA schema_version = 7", "sqlite", ["schema_version"], "corrupt"),
    # tables, columns, databases
    ("DROP TABLE users", "sqlite", ["users"], "drops table users and all its rows"),
    ("DROP TABLE IF EXISTS a, b CASCADE", "postgres", ["a", "b"], "CASCADE"),
    ('DROP TABLE "Odd Name"', "postgres", ["Odd Name"], "all its rows"),
    ("DROP DATABASE shop WITH (FORCE)", "postgres", ["shop"], "FORCE ends its open sessions"),
    ("DROP SCHEMA billing CASCADE", "postgres", ["billing"], "every table in it"),
    ("DROP TYPE mood CASCADE", "postgres", ["mood"], "table columns"),
    ("DROP OWNED BY app_user", "postgres", ["app_user"], "every object owned by app_user"),
    ("ALTER TABLE users DROP COLUMN email", "sqlite", ["users.email"], "drops column users.email"),
    ("ALTER TABLE users DROP email", "postgres", ["users.email"], "drops column users.email"),
    ("ALTER TABLE users ALTER COLUMN age TYPE smallint", "postgres", ["users.age"], "may lose data"),
    ("ALTER TABLE ONLY users ALTER age SET DATA TYPE int USING age::int", "postgres", ["users.age"], "USING"),
    ("ALTER TYPE address DROP ATTRIBUTE zip CASCADE", "postgres", ["address.zip"], "every table column"),
    ("ALTER TYPE address ALTER ATTRIBUTE zip TYPE int CASCADE", "postgres", ["address.zip"], "may lose data"),
    # bodies that run later destroy data when they run
    ("CREATE TRIGGER t AFTER INSERT ON a BEGIN DELETE FROM log; END", "sqlite", ["log"], "each time trigger t"),
    ("CREATE RULE r AS ON INSERT TO a DO ALSO (DELETE FROM log; INSERT INTO b VALUES (1))", "postgres", ["log"],
     "rule r runs"),
]


@pytest.mark.parametrize("sql, dialect, objects, reason", DESTROYS)
def test_every_data_loss_is_named_with_what_it_destroys(sql, dialect, objects, reason):
    stmt = only(sql, dialect)
    assert stmt.verdict == "destroys" and stmt.destructive, stmt
    assert list(stmt.objects) == objects
    assert any(reason in r for r in stmt.reasons), stmt.reasons
    assert "could not analyse" not in " ".join(stmt.reasons)
    assert analyze_sql(sql, dialect).confirmation_words == objects


def test_multi_action_alter_table_names_each_loss_and_each_lock():
    stmt = only("ALTER TABLE orders DROP COLUMN note, ALTER COLUMN total TYPE bigint, "
                "ALTER COLUMN qty TYPE numeric(10,2), ADD COLUMN paid boolean, ALTER COLUMN ref SET NOT NULL",
                "postgres")
    assert stmt.verdict == "destroys"
    assert stmt.objects == ("orders.note", "orders.total", "orders.qty")
    assert stmt.kind == "ALTER TABLE DROP COLUMN, ALTER COLUMN TYPE, ADD COLUMN, SET NOT NULL"
    assert any("orders.ref" in w and "NOT VALID" in w for w in stmt.warnings)
    assert any("to bigint" in r for r in stmt.reasons) and any("to numeric(10,2)" in r for r in stmt.reasons)


# (sql, dialect, words that must appear in a warning)
WARNS = [
    ("ALTER TABLE users ALTER COLUMN email SET NOT NULL", "postgres", "CHECK (email IS NOT NULL) NOT VALID"),
    ("ALTER TABLE users ALTER COLUMN email DROP NOT NULL", "postgres", "may now hold NULLs"),
    ("ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id)", "postgres", "NOT VALID, then VALIDATE"),
    ("ALTER TABLE o ADD CONSTRAINT positive CHECK (total > 0)", "postgres", "NOT VALID, then VALIDATE"),
    ("ALTER TABLE o ADD CONSTRAINT o_ref UNIQUE (ref)", "postgres", "USING INDEX"),
    ("ALTER TABLE o ADD PRIMARY KEY (id)", "postgres", "CONCURRENTLY first"),
    ("ALTER TABLE o ADD COLUMN token uuid DEFAULT gen_random_uuid()", "postgres", "rewrites o"),
    ("ALTER TABLE o ADD COLUMN n bigserial", "postgres", "rewrites o"),
    ("ALTER TABLE o ADD COLUMN total_cents int GENERATED ALWAYS AS (total * 100) STORED NOT NULL", "postgres",
     "stored generated column o.total_cents"),
    ("ALTER TABLE o ADD COLUMN c int NOT NULL", "postgres", "fails if o has rows"),
    ("ALTER TABLE o ADD COLUMN c int NOT NULL", "sqlite", "SQLite rejects NOT NULL column"),
    ("ALTER TABLE o ADD COLUMN created text DEFAULT CURRENT_TIMESTAMP", "sqlite", "non-constant DEFAULT"),
    ("CREATE UNIQUE INDEX CONCURRENTLY u_email ON users (email)", "postgres", "duplicate values in (email)"),
    ("CREATE UNIQUE INDEX u_email ON users (email)", "sqlite", "HAVING count(*) > 1"),
    ("CREATE INDEX idx ON users (email)", "postgres", "CREATE INDEX CONCURRENTLY"),
    ("REINDEX TABLE users", "postgres", "REINDEX … CONCURRENTLY"),
    ("ALTER TABLE events DETACH PARTITION events_2020", "postgres", "DETACH PARTITION … CONCURRENTLY"),
    ("DROP INDEX users_email_idx", "postgres", "DROP INDEX CONCURRENTLY"),
    ("DROP INDEX a, b", "postgres", "drops index b"),
    ("DROP INDEX users_email_idx", "sqlite", "queries that used it may slow down"),
    ("DROP TRIGGER audit ON users", "postgres", "what it did on each write stops"),
    ("DROP TRIGGER audit", "sqlite", "what it did on each write stops"),
    ("VACUUM FULL users", "postgres", "pg_repack"),
    ("VACUUM (FULL, VERBOSE) users", "postgres", "ACCESS EXCLUSIVE"),
    ("VACUUM", "sqlite", "rebuilds the whole database file"),
    ("LOCK TABLE users IN SHARE MODE", "postgres", "holds SHARE on users"),
    ("LOCK users", "postgres", "lock_timeout"),
    ("CLUSTER users USING users_pkey", "postgres", "CLUSTER rewrites users"),
    ("ALTER TABLE users RENAME TO people", "sqlite", "readers of the old name break"),
    ("ALTER TABLE users RENAME COLUMN mail TO email", "postgres", "readers of the old name break"),
    ("DROP VIEW v", "postgres", "queries on it break"),
    ("DROP SCHEMA s", "postgres", "fails unless it is empty"),
    ("DROP FOREIGN TABLE remote_orders", "postgres", "the remote data stays"),
    ("ALTER FOREIGN TABLE remote_orders DROP COLUMN note", "postgres", "the remote data stays"),
    ("ALTER FOREIGN TABLE remote_orders ALTER COLUMN note TYPE text", "postgres", "remote data is untouched"),
    ("ALTER TYPE address DROP ATTRIBUTE zip", "postgres", "fails while a table column uses type address"),
    ("ALTER TABLE users DROP CONSTRAINT users_email_key", "postgres", "no longer guaranteed"),
    ("REFRESH MATERIALIZED VIEW totals", "postgres", "CONCURRENTLY"),
    ("CREATE RULE quiet AS ON DELETE TO users DO INSTEAD NOTHING", "postgres", "silently discards every DELETE"),
    ("BEGIN", "sqlite", "transaction control"),
]


# Each warning that names a lock or a failure also says what to do instead.
_ADVICE = re.compile(r"[:;] (use|add|give|keep|look|CREATE UNIQUE INDEX CONCURRENTLY|pg_repack|put|check)|instead")


@pytest.mark.parametrize("sql, dialect, warning", [w for w in WARNS if w[1] == "postgres" and (
    "lock" in analyze_sql(w[0], "postgres").statements[0].warnings[0].lower() or "fails if" in w[2])])
def test_every_lock_warning_names_the_lock_and_a_safer_pattern(sql, dialect, warning):
    [first, *_] = analyze_sql(sql, dialect).statements[0].warnings
    assert _ADVICE.search(first), first


@pytest.mark.parametrize("sql, dialect, warning", WARNS)
def test_every_lock_or_failure_is_warned_without_typed_confirmation(sql, dialect, warning):
    analysis = analyze_sql(sql, dialect)
    [stmt] = analysis.statements
    assert stmt.verdict == "warns" and not stmt.destructive, stmt
    assert any(warning in w for w in stmt.warnings), stmt.warnings
    assert stmt.objects == () and analysis.confirmation_words == [] and analysis.confirmation_word is None


SAFE = [
    ("ALTER TABLE o VALIDATE CONSTRAINT fk", "postgres"),
    ("ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id) NOT VALID", "postgres"),
    ("ALTER TABLE o ADD CONSTRAINT positive CHECK (total > 0) NOT VALID", "postgres"),
    ("ALTER TABLE o ADD CONSTRAINT o_ref UNIQUE USING INDEX o_ref_idx", "postgres"),
    ("ALTER TABLE o ADD CONSTRAINT o_pkey PRIMARY KEY USING INDEX o_id_idx", "postgres"),
    ("REINDEX INDEX CONCURRENTLY users_email_idx", "postgres"),
    ("REINDEX (VERBOSE) TABLE CONCURRENTLY users", "postgres"),
    ("ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY", "postgres"),
    ("VACUUM users", "postgres"),
    ("VACUUM (ANALYZE) users", "postgres"),
    ("ANALYZE users", "postgres"),
    ("ANALYZE", "sqlite"),
    ("SET search_path TO app, public", "postgres"),
    ("SET lock_timeout = '2s'", "postgres"),
    ("SET statement_timeout TO 5000", "postgres"),
    ("SET ROLE app_owner", "postgres"),
    ("RESET ALL", "postgres"),
    ("CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%')", "postgres"),
    ("CREATE TEMP TABLE scratch (id int) ON COMMIT DROP", "postgres"),
    ("ALTER TABLE users ENABLE ROW LEVEL SECURITY", "postgres"),
    ("ALTER TABLE users DISABLE ROW LEVEL SECURITY", "postgres"),
    ("ALTER TYPE mood ADD VALUE 'meh'", "postgres"),
    ("ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' AFTER 'ok'", "postgres"),
    ("ALTER TABLE o ADD COLUMN paid boolean DEFAULT false NOT NULL", "postgres"),
    ("ALTER TABLE o ADD COLUMN created timestamptz NOT NULL DEFAULT now()", "postgres"),
    ("ALTER TABLE o ADD COLUMN note text", "sqlite"),
    ("ALTER TABLE users ALTER COLUMN age SET DEFAULT 0", "postgres"),
    ("CREATE INDEX CONCURRENTLY idx ON users (email)", "postgres"),
    ("CREATE INDEX idx ON users (email)", "sqlite"),
    ("DELETE FROM accounts WHERE id = 3", "sqlite"),
    ("DELETE FROM accounts WHERE id = 3 OR 1 = 0", "postgres"),
    ("DELETE FROM accounts WHERE EXISTS (SELECT 1 FROM closed WHERE closed.id = accounts.id)", "postgres"),
    ("DELETE FROM accounts WHERE 'abc'", "sqlite"),
    ("DELETE FROM accounts WHERE deleted_at IS NOT NULL", "postgres"),
    ("DELETE FROM accounts WHERE random() = random()", "sqlite"),
    ("UPDATE accounts SET balance = 0 WHERE id IN (SELECT id FROM closed)", "postgres"),
    ("INSERT INTO users (email) VALUES ('a') ON CONFLICT (email) DO UPDATE SET seen = now()", "postgres"),
    ("INSERT OR IGNORE INTO users (email) VALUES ('a')", "sqlite"),
    ("MERGE INTO stock s USING delivery d ON s.id = d.id WHEN MATCHED THEN UPDATE SET n = s.n + d.n "
     "WHEN NOT MATCHED THEN INSERT VALUES (d.id, d.n)", "postgres"),
    ("SELECT * FROM users WHERE 1=1", "postgres"),
    ("EXPLAIN SELECT 1", "postgres"),
    ("PRAGMA foreign_keys = OFF", "sqlite"),
    ("PRAGMA writable_schema", "sqlite"),
    ("PRAGMA writable_schema = OFF", "sqlite"),
    ("COMMENT ON TABLE users IS 'people'", "postgres"),
    ("GRANT SELECT ON users TO reader", "postgres"),
    ("CREATE TABLE t (id int PRIMARY KEY, note text)", "sqlite"),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", "postgres"),
    ("CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END", "postgres"),
]


@pytest.mark.parametrize("sql, dialect", SAFE)
def test_safe_steps_are_neither_confirmed_nor_warned(sql, dialect):
    stmt = only(sql, dialect)
    assert stmt.verdict is None and not stmt.destructive, stmt
    assert stmt.reasons == () and stmt.warnings == () and stmt.objects == ()


def test_add_value_alone_is_safe_but_warns_inside_a_longer_migration():
    assert only("ALTER TYPE mood ADD VALUE 'meh'", "postgres").verdict is None
    analysis = analyze_sql("ALTER TYPE mood ADD VALUE 'meh'; UPDATE people SET m = 'meh' WHERE id = 1", "postgres")
    assert analysis.statements[0].verdict == "warns"
    assert "migration of its own" in analysis.statements[0].warnings[0]


def test_tables_created_by_the_migration_hold_no_earlier_data():
    sql = ("CREATE TABLE staging (id int, v text); CREATE INDEX s_v ON staging (v); "
           "ALTER TABLE staging ADD COLUMN w int NOT NULL, DROP COLUMN v; DELETE FROM staging; DROP TABLE staging")
    analysis = analyze_sql(sql, "postgres")
    assert [s.verdict for s in analysis.statements] == [None, None, "warns", "warns", "warns"]
    assert analysis.confirmation_words == []
    # … but IF NOT EXISTS may have found a table full of rows
    again = analyze_sql("CREATE TABLE IF NOT EXISTS staging (id int); DROP TABLE staging", "postgres")
    assert again.statements[1].verdict == "destroys"
    # … and a table renamed into the created name is the old one
    swapped = analyze_sql("CREATE TABLE tmp (id int); ALTER TABLE tmp RENAME TO tmp2; "
                          "ALTER TABLE users RENAME TO tmp; DROP TABLE tmp", "postgres")
    assert swapped.statements[-1].verdict == "destroys" and swapped.confirmation_words == ["tmp"]


def test_not_understood_is_said_honestly_and_needs_its_own_word():
    analysis = analyze_sql("DROP TABLE a; DO $$ BEGIN PERFORM 1; END $$; DROP TABLE b", "postgres")
    assert [s.verdict for s in analysis.statements] == ["destroys", "not_understood", "destroys"]
    assert analysis.statements[1].reasons[0] == "devagent could not analyse this statement: review it by hand"
    assert analysis.confirmation_words == ["a", "do-2", "b"]
    assert analysis.confirmation_word == "a"


def test_merge_update_has_no_made_up_reason():
    stmt = only("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v", "postgres")
    assert stmt.verdict is None and stmt.reasons == ()


def test_a_where_devagent_cannot_read_is_not_understood():
    stmt = only("DELETE FROM t WHERE tags @> 'x' @@@ ((", "sqlite")
    assert stmt.verdict == "not_understood"


# --- the SQLite table rebuild -----------------------------------------------------------------

REBUILD = (
    "PRAGMA foreign_keys=OFF;\n"
    'CREATE TABLE "new_users" (id integer PRIMARY KEY, email text NOT NULL);\n'
    'INSERT INTO "new_users" (id, email) SELECT id, email FROM "users";\n'
    'DROP TABLE "users";\n'
    'ALTER TABLE "new_users" RENAME TO "users";\n'
    'CREATE INDEX users_email ON users (email);\n'
    "PRAGMA foreign_keys=ON;\n"
)


def test_rebuild_that_copies_every_column_is_not_a_table_drop():
    analysis = analyze_sql(REBUILD, "sqlite", schema={"users": ["id", "email"]})
    drop = analysis.statements[3]
    assert drop.verdict == "warns" and "rebuilds table users" in drop.warnings[0]
    assert analysis.confirmation_words == []


def test_rebuild_that_leaves_a_column_out_names_the_lost_column():
    analysis = analyze_sql(REBUILD, "sqlite", schema={"users": ["id", "email", "phone"]})
    drop = analysis.statements[3]
    assert drop.verdict == "destroys" and drop.objects == ("users.phone",)
    assert analysis.confirmation_words == ["users.phone"]


def test_rebuild_without_the_old_columns_known_still_asks():
    analysis = analyze_sql(REBUILD, "sqlite")
    drop = analysis.statements[3]
    assert drop.verdict == "destroys" and drop.objects == ("users",)
    assert "keeping only the columns the copy names (email, id)" in drop.reasons[0]


def test_rebuild_with_select_star_and_the_rename_first_variant():
    sql = ("ALTER TABLE t RENAME TO t_old; CREATE TABLE t (a int, b int); INSERT INTO t SELECT * FROM t_old; "
           "DROP TABLE t_old")
    analysis = analyze_sql(sql, "sqlite")
    assert analysis.statements[3].verdict == "warns" and analysis.confirmation_words == []


@pytest.mark.parametrize("copy", [
    "INSERT INTO new_t SELECT * FROM t WHERE keep = 1",
    "INSERT OR IGNORE INTO new_t SELECT * FROM t",
    "INSERT INTO new_t SELECT DISTINCT * FROM t",
    "INSERT INTO new_t SELECT * FROM other",
])
def test_a_copy_that_may_lose_rows_is_no_rebuild(copy):
    sql = f"CREATE TABLE new_t (a int); {copy}; DROP TABLE t; ALTER TABLE new_t RENAME TO t"
    analysis = analyze_sql(sql, "sqlite", schema={"t": ["a"]})
    assert analysis.statements[2].verdict == "destroys" and analysis.confirmation_words == ["t"]


# --- splitting: PostgreSQL routine bodies and rule actions ------------------------------------

ATOMIC = ("CREATE FUNCTION add_one(i int) RETURNS int LANGUAGE sql\n"
          "BEGIN ATOMIC\n  SELECT CASE WHEN i > 0 THEN i + 1 ELSE 1 END;\n  SELECT i + 1;\nEND")


@pytest.mark.parametrize("sql, expected", [
    (ATOMIC + ";\nSELECT add_one(1);", [ATOMIC, "SELECT add_one(1)"]),
    ("CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END; SELECT 2",
     ["CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END", "SELECT 2"]),
    ("CREATE RULE r AS ON INSERT TO a DO INSTEAD (INSERT INTO b VALUES (1); INSERT INTO c VALUES (2)); SELECT 1",
     ["CREATE RULE r AS ON INSERT TO a DO INSTEAD (INSERT INTO b VALUES (1); INSERT INTO c VALUES (2))",
      "SELECT 1"]),
    ("SELECT (1; SELECT 2", ["SELECT (1; SELECT 2"]),  # psql does not cut inside parentheses either
])
def test_postgres_routine_bodies_and_rule_actions_are_one_statement(sql, expected):
    analysis = analyze_sql(sql, "postgres")
    assert [s.text for s in analysis.statements] == expected
    assert_exact_slices(analysis)
    assert not analysis.has_transaction_control


def test_begin_atomic_function_is_not_refused_as_transaction_control():
    analysis = analyze_sql(ATOMIC, "postgres")
    [stmt] = analysis.statements
    assert stmt.kind == "CREATE FUNCTION" and stmt.verdict is None


def test_sqlite_is_not_split_like_postgres():
    # sqlite3 splits at every ';' outside a trigger body, parentheses or not
    assert len(analyze_sql("SELECT (1; SELECT 2", "sqlite").statements) == 2


# --- the slices are the input ------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("ab();'\"$-/*\n ") + [
    "CREATE FUNCTION f() ", " BEGIN ATOMIC ", " CASE ", " END", "CREATE RULE r AS ", "$$", "--", "/*", "*/"]),
    max_size=24).map("".join), dialects)
def test_statements_and_what_lies_between_them_rebuild_the_input(sql, dialect):
    analysis = analyze_sql(sql, dialect)
    assert_exact_slices(analysis)
    pieces, previous = [], 0
    for stmt in analysis.statements:
        gap = sql[previous:stmt.start]
        # between statements: only whitespace, comments and ';'
        assert not analyze_sql(gap, dialect).statements or gap.strip(" \t\n\r\f\v;") == ""
        pieces += [gap, stmt.text]
        previous = stmt.end
    assert "".join(pieces) + sql[previous:] == sql


def test_huge_inputs_are_analysed_in_linear_time():
    import time

    for sql in ["\0" * 200_000, "(" * 200_000, "'" * 200_000, "a " * 100_000, "/*" * 100_000, "/* " * 100_000,
                "SELECT 1;" * 5_000, "DELETE FROM t WHERE " + "id = 1 OR " * 5_000 + "1=1",
                "CREATE TRIGGER t AFTER INSERT ON a BEGIN " + "SELECT 1;" * 5_000 + " END"]:
        for dialect in ("sqlite", "postgres"):
            # CPU time, not the wall clock: the bound is on this work, not on the machine's load
            started = time.process_time()
            analysis = analyze_sql(sql, dialect)
            took = time.process_time() - started
            assert_exact_slices(analysis)
            assert all(s.verdict in ("destroys", "warns", "not_understood", None) for s in analysis.statements)
            assert took < 1.0, (sql[:20], dialect, took)


def test_drop_of_a_routine_names_it_without_its_signature():
    stmt = only("DROP FUNCTION f(int, text) CASCADE", "postgres")
    assert stmt.verdict == "destroys" and stmt.objects == ("f",)
    assert stmt.reasons[0].startswith("drops function f(int, text); CASCADE")
    assert only("DROP FUNCTION IF EXISTS f(int)", "postgres").verdict == "warns"


# --- the two PostgreSQL splitting cases, applied for real on the thread's sidecar ---------------

PG_BODIES = (
    "CREATE TABLE events (id int PRIMARY KEY, n int NOT NULL);\n"
    "CREATE TABLE audit (id int, note text);\n"
    "CREATE FUNCTION next_n(i int) RETURNS int LANGUAGE sql\n"
    "BEGIN ATOMIC\n"
    "  SELECT CASE WHEN i > 0 THEN i + 1 ELSE 1 END;\n"
    "END;\n"
    "CREATE RULE events_audit AS ON INSERT TO events DO ALSO (\n"
    "  INSERT INTO audit VALUES (new.id, 'inserted');\n"
    "  INSERT INTO audit VALUES (new.id, 'twice');\n"
    ");\n"
    "INSERT INTO events VALUES (1, next_n(41));\n"
)


async def test_begin_atomic_function_and_rule_actions_apply_on_postgres(
        sandbox_image, docker_client, home, repo) -> None:
    from agents.testing import ScriptedModel, assistant_message, function_call

    from agent_helpers import ScriptedApprover, tool_outputs
    from devagent.runner import Decision, TaskOptions, ThreadRunner
    from devagent.store import Store

    analysis = analyze_sql(PG_BODIES, "postgres")
    assert [s.kind for s in analysis.statements] == [
        "CREATE TABLE", "CREATE TABLE", "CREATE FUNCTION", "CREATE RULE", "INSERT"]
    assert analysis.confirmation_words == [] and not analysis.has_transaction_control

    query = ("psql -h postgres -U devagent devagent -At -c 'SELECT next_n(1), next_n(-5)' "
             "-c 'SELECT n FROM events' -c 'SELECT note FROM audit ORDER BY note'")
    model = ScriptedModel([[function_call("run_migration", {"sql": PG_BODIES}, call_id="bodies")],
                           [function_call("run_shell", {"command": query}, call_id="check")],
                           [assistant_message("done")]])
    runner = ThreadRunner(Store(home), model=model, approver=ScriptedApprover(then=Decision(True)),
                          docker_client=docker_client)
    thread = runner.create_thread(repo, TaskOptions(database="postgres"))
    assert (await runner.run_task(thread.id, "add the function")).status == "done"
    outputs = tool_outputs(model)
    assert outputs["bodies"].startswith("applied: 5 statements"), outputs["bodies"]
    lines = outputs["check"].splitlines()
    assert lines[0].startswith("[exit code 0"), lines
    assert lines[1:] == ["2|1", "42", "inserted", "twice"]


def test_a_stored_generated_not_null_column_is_a_rewrite_not_a_failure():
    stmt = only("ALTER TABLE o ADD COLUMN total_cents int GENERATED ALWAYS AS (total * 100) STORED NOT NULL",
                "postgres")
    assert stmt.verdict == "warns" and len(stmt.warnings) == 1
    assert "rewrites o" in stmt.warnings[0] and "fails if" not in stmt.warnings[0]


@pytest.mark.parametrize("sql, dialect, verdict, reason", [
    ("SELECT dblink_exec('dbname=app', 'DROP TABLE users')", "postgres", "not_understood", "runs SQL that devagent"),
    ("SELECT cron.schedule('0 * * * *', 'DELETE FROM t')", "postgres", "not_understood", "schedules SQL"),
    ("SELECT load_extension('evil')", "sqlite", "not_understood", "loads native code"),
    ("SELECT lo_unlink(16384)", "postgres", "destroys", "deletes a large object"),
    ("SELECT pg_catalog.setval('s', 1, false)", "postgres", "warns", "may collide with existing keys"),
    ("SELECT pg_terminate_backend(42)", "postgres", "warns", "ends another session"),
    ("CREATE MATERIALIZED VIEW mv AS SELECT * FROM dblink('x', 'SELECT 1') AS r(a int)", "postgres",
     "not_understood", "runs SQL that devagent"),
])
def test_a_select_that_calls_a_dangerous_function_is_not_harmless(sql, dialect, verdict, reason):
    stmt = only(sql, dialect)
    assert stmt.verdict == verdict and any(reason in r for r in stmt.reasons), stmt
    # another schema's function of the same name is not that one, but it is unknown code too
    other = only("SELECT myschema.schedule(1)", "postgres")
    assert other.verdict == "not_understood" and "does not see" in other.reasons[1]


@pytest.mark.parametrize("sql", [
    "SELECT archive_old_orders()",
    "SELECT app.purge(30)",
    'SELECT "Purge"(1)',
    "INSERT INTO t (a) VALUES (evil())",
    "UPDATE t SET a = lower(b) WHERE should_reset(id)",
    "DELETE FROM t WHERE id IN (SELECT pick_victims())",
    "SELECT * FROM generate_series(1, 3) AS g(i), cleanup(g.i)",
    "CREATE INDEX t_norm ON t (my_normalise(a))",
    "CREATE TABLE copy AS SELECT transform(a) FROM t",
    "WITH x AS (SELECT 1) SELECT wipe() FROM x",
])
def test_a_call_of_a_function_devagent_does_not_see_is_not_understood(sql):
    stmt = only(sql, "postgres")
    assert stmt.verdict == "not_understood" and stmt.confirmation_words, stmt
    assert "it may do anything" in stmt.reasons[1]


@pytest.mark.parametrize("sql", [
    "SELECT count(*), now(), coalesce(a, 1), greatest(a, b), pg_catalog.lower(c) FROM t",
    "INSERT INTO t (id, a) VALUES (gen_random_uuid(), uuid_generate_v4())",
    "SELECT * FROM generate_series(1, 3) g(i) JOIN (VALUES (1)) v(a) ON v.a = g.i",
    "SELECT x::numeric(10, 2), CAST(y AS varchar(3)), EXTRACT(year FROM now())",
    "CREATE TABLE t (a varchar(10) DEFAULT 'x', b numeric(10, 2), CHECK (length(a) > 0))",
    "CREATE INDEX t_lower ON t USING gin (lower(a))",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT max(i) FROM n",
])
def test_built_in_functions_and_function_like_syntax_are_not_calls_of_unknown_code(sql):
    assert only(sql, "postgres").verdict in (None, "warns")


def test_a_function_the_migration_creates_is_judged_by_its_body():
    harmless = analyze_sql("CREATE FUNCTION f(i int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT i + 1; END;\n"
                           "CREATE FUNCTION g(i int) RETURNS int LANGUAGE sql AS $$ SELECT f(i) * 2 $$;\n"
                           "SELECT f(1), g(2)", "postgres")
    assert [s.verdict for s in harmless.statements] == [None, None, None]
    for body in ("LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; END $$",
                 "LANGUAGE sql AS $$ DELETE FROM t RETURNING 1 $$",
                 "LANGUAGE sql BEGIN ATOMIC SELECT unknown_thing(); END"):
        analysis = analyze_sql(f"CREATE FUNCTION h() RETURNS int {body}; SELECT h()", "postgres")
        call = analysis.statements[1]
        assert call.verdict == "not_understood" and "cannot vouch" in call.reasons[1], body


# --- zero-miss under rewording -----------------------------------------------------------------

LOSSES = [  # (tokens, dialect, object): each token may be re-cased and separated by comments
    (["DROP", "TABLE", "{t}"], "sqlite", "{t}"),
    (["DROP", "TABLE", "IF", "EXISTS", "{t}", "CASCADE"], "postgres", "{t}"),
    (["DELETE", "FROM", "{t}"], "sqlite", "{t}"),
    (["DELETE", "FROM", "{t}", "WHERE", "1", "=", "1"], "postgres", "{t}"),
    (["DELETE", "FROM", "{t}", "WHERE", "TRUE", "OR", "id", "=", "2"], "postgres", "{t}"),
    (["UPDATE", "{t}", "SET", "a", "=", "1"], "sqlite", "{t}"),
    (["TRUNCATE", "{t}"], "postgres", "{t}"),
    (["ALTER", "TABLE", "{t}", "DROP", "COLUMN", "c"], "postgres", "{t}.c"),
    (["ALTER", "TABLE", "{t}", "ADD", "COLUMN", "x", "int", ",", "DROP", "c"], "postgres", "{t}.c"),
    (["ALTER", "TABLE", "{t}", "ALTER", "COLUMN", "c", "TYPE", "int"], "postgres", "{t}.c"),
    (["INSERT", "OR", "REPLACE", "INTO", "{t}", "VALUES", "(", "1", ")"], "sqlite", "{t}"),
    (["REPLACE", "INTO", "{t}", "VALUES", "(", "1", ")"], "sqlite", "{t}"),
    (["WITH", "x", "AS", "(", "DELETE", "FROM", "{t}", "RETURNING", "*", ")", "SELECT", "1"], "postgres", "{t}"),
]
gaps = st.sampled_from([" ", "\n", "\t", " /* ; */ ", " -- ;\n", "\n\n  "])
table_names = st.sampled_from([("orders", "orders"), ('"Orders"', "Orders"), ("app.orders", "app.orders"),
                               ('"we;ird"', "we;ird")])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(LOSSES), table_names, st.lists(gaps, min_size=20, max_size=20),
       st.lists(st.booleans(), min_size=20, max_size=20))
def test_every_rewording_of_a_data_loss_still_names_it(loss, table, spaces, upper):
    tokens, dialect, obj = loss
    spelled, name = table
    if dialect == "sqlite" and "." in spelled:
        spelled, name = spelled.replace("app.", "main."), name.replace("app.", "main.")
    # keywords in any case; the table as written (objects are named as the SQL spells them)
    words = [tok.format(t=spelled) if "{t}" in tok else tok if not tok.isupper() else tok if up else tok.lower()
             for tok, up in zip(tokens, upper)]
    sql = "".join(w + gap for w, gap in zip(words, spaces)).strip()
    analysis = analyze_sql(sql + ";", dialect)
    [stmt] = analysis.statements
    assert stmt.verdict == "destroys", (sql, stmt)
    assert obj.format(t=name) in stmt.objects, (sql, stmt.objects)
