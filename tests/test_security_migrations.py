"""What a migration's approval screen shows is what the database runs, whatever the sandbox did
before: the real runner, real Docker, the real PostgreSQL sidecar and real SQLite.

* The server reads SQL as the screen did (settings pinned for the runner's session), and every
  statement on the screen reaches it as exactly one statement (extended query protocol), so a
  role default such as standard_conforming_strings=off cannot turn one statement into two.
* The thread's database role is not a superuser.
* The migration runner is started by absolute path from root-owned files, so a `python3` planted
  earlier on PATH by an approved command never runs the approved SQL.
* The thread's internal network has no address on the host (inspected, no traffic sent).
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import re
import secrets
import shlex
import sqlite3
from pathlib import Path
from typing import Any

from agents.testing import ScriptedModel, assistant_message, function_call
from rich.console import Console

from devagent.approvals import ApprovalRequest
from devagent.runner import Decision, TaskOptions, ThreadRunner
from devagent.store import Store
from devagent.ui import approval_panel

from agent_helpers import ScriptedApprover, tool_outputs

ATTACK = "SELECT 'x\\''; DROP TABLE users; --'"
STATEMENT_ROW = re.compile(r"│ #(\d+) ([A-Z][A-Z ]*?)(?:  |$)")


def runner_for(home: Path, docker_client: Any, script: list[Any], approver: Any) -> tuple[ThreadRunner, ScriptedModel]:
    model = ScriptedModel([item if isinstance(item, list) else [item] for item in script])
    return ThreadRunner(Store(home), model=model, approver=approver, docker_client=docker_client), model


def screen_of(request: ApprovalRequest) -> str:
    console = Console(record=True, width=220, color_system=None, file=io.StringIO())
    console.print(approval_panel(request))
    return console.export_text()


def statement_rows(screen: str) -> list[tuple[str, str]]:
    """(number, kind) of each row of the screen's statements table."""
    return [(m.group(1), m.group(2)) for line in screen.splitlines() if (m := STATEMENT_ROW.search(line))]


def shell_output(outputs: dict[str, str], call_id: str) -> list[str]:
    lines = outputs[call_id].splitlines()
    assert lines[0].startswith("[exit code 0"), outputs[call_id]
    return lines[1:]


def psql(*queries: str) -> str:
    """A run_shell command querying the thread's server as the thread's role (plain psql, simple protocol)."""
    return "psql -X -h postgres -U devagent devagent -At " + " ".join(f"-c \"{q}\"" for q in queries)


def run_in_helper(container: Any, header: dict[str, Any], data: bytes) -> dict[str, Any]:
    """Feed the migration runner in the thread's container directly, as devagent does."""
    from devagent.migrations import MIGRATE_ARGV, RESULT_MARKER

    result = container.exec("devagent-migrate (test)", argv=MIGRATE_ARGV,
                            stdin=json.dumps(header).encode() + b"\n" + data, timeout_s=60)
    line = next(l for l in result.output.splitlines() if l.startswith(RESULT_MARKER))
    return json.loads(line[len(RESULT_MARKER):])


# ----------------------------------------------------------------------------- item 5: PostgreSQL


async def test_a_role_default_cannot_make_the_server_split_approved_sql_differently(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    approver = ScriptedApprover(then=Decision(True))
    runner, model = runner_for(home, docker_client, [
        function_call("run_migration", {"sql": "CREATE TABLE users (id int PRIMARY KEY, email text);\n"
                                               "INSERT INTO users VALUES (1, 'a@example.com');\n"}, call_id="setup"),
        # Approved, and harmless on its own: from now on the role's sessions read '\'' the old way...
        function_call("run_migration", {"sql": "ALTER ROLE devagent SET standard_conforming_strings = off;"},
                      call_id="role"),
        # ...so a plain psql session (the control) now splits this text into SELECT + DROP TABLE.
        function_call("run_shell", {"command": psql("SHOW standard_conforming_strings")}, call_id="control"),
        # The screen reads it as one SELECT of a string; so must the server.
        function_call("run_migration", {"sql": ATTACK}, call_id="attack"),
        # A statement that changes the reading mid-migration ends it, rolled back.
        function_call("run_migration", {"sql": "SET standard_conforming_strings = off;\n" + ATTACK + ";\n"},
                      call_id="midway"),
        function_call("run_migration", {"sql": "SELECT set_config('client_encoding', 'LATIN1', false);\n"
                                               "INSERT INTO users VALUES (2, 'b@example.com');\n"}, call_id="encoding"),
        function_call("run_shell", {"command": psql(
            "SELECT count(*) FROM users",
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            "SELECT call_id FROM devagent_migrations ORDER BY id")}, call_id="check"),
        assistant_message("done"),
    ], approver)
    thread = runner.create_thread(repo, TaskOptions(database="postgres"))
    assert (await runner.run_task(thread.id, "migrate")).status == "done"
    outputs = tool_outputs(model)

    assert outputs["role"].startswith("applied: 1 statement "), outputs["role"]
    assert shell_output(outputs, "control") == ["off"]

    # What the human saw: one statement, a SELECT, nothing flagged.
    attack_request = next(r for r in approver.shown if r.call_id == "attack")
    screen = screen_of(attack_request)
    assert statement_rows(screen) == [("1", "SELECT")], screen
    assert "destroys data" not in screen and "NOT ANALYSED" not in screen
    # What ran: exactly that one statement.
    assert outputs["attack"].startswith("applied: 1 statement in one transaction"), outputs["attack"]

    midway = next(r for r in approver.shown if r.call_id == "midway")
    assert statement_rows(screen_of(midway)) == [("1", "SET"), ("2", "SELECT")]
    assert outputs["midway"].startswith("failed at statement 1 of 2: this statement changed how the server "
                                        "reads SQL (standard_conforming_strings is now off, not on)"), outputs["midway"]
    assert "rolled back" in outputs["midway"]
    assert outputs["encoding"].startswith("failed at statement 1 of 2: this statement changed how the server "
                                          "reads SQL (client_encoding is now LATIN1, not UTF8)"), outputs["encoding"]

    # users is intact (the second INSERT was rolled back), the role is no superuser, and the
    # history holds exactly the migrations that applied.
    assert shell_output(outputs, "check") == ["1", "f", "setup", "role", "attack"]


async def test_the_thread_role_is_not_a_superuser_and_ordinary_migrations_still_apply(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    from devagent.sidecar import PostgresSidecar, SidecarContainer
    from devagent.sandbox import ContainerSpec

    schema = ("CREATE EXTENSION IF NOT EXISTS pgcrypto;\n"
              "CREATE TABLE users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text NOT NULL);\n"
              "CREATE INDEX users_email_idx ON users (email);\n"
              "INSERT INTO users (email) VALUES ('a@example.com');\n")
    runner, model = runner_for(home, docker_client, [
        function_call("run_migration", {"sql": schema}, call_id="schema"),
        function_call("run_migration", {"sql": "CREATE INDEX CONCURRENTLY users_email_2 ON users (email);"},
                      call_id="concurrently"),
        # Needs a superuser: refused by the server, rolled back.
        function_call("run_migration", {"sql": "CREATE TABLE kept (x int);\n"
                                               "CREATE EVENT TRIGGER t ON ddl_command_start EXECUTE FUNCTION f();\n"},
                      call_id="event"),
        # A `sh` and a `cat` of the sandbox user's, first on PATH: devagent's own steps never use them.
        function_call("run_shell", {"command": "mkdir -p ~/.local/bin && for c in sh cat; do printf "
                                               "'#!/bin/bash\\ntouch /workspace/ran-fake-%s\\n' $c > ~/.local/bin/$c; "
                                               "chmod +x ~/.local/bin/$c; done"}, call_id="plant"),
        function_call("run_shell", {"command": psql(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
            "SELECT indexname FROM pg_indexes WHERE tablename = 'users' ORDER BY 1",
            "SELECT coalesce(to_regclass('kept')::text, 'absent')")}, call_id="check"),
        assistant_message("done"),
    ], ScriptedApprover(then=Decision(True)))
    thread = runner.create_thread(repo, TaskOptions(database="postgres"))
    assert (await runner.run_task(thread.id, "migrate")).status == "done"
    outputs = tool_outputs(model)
    assert outputs["schema"].startswith("applied: 4 statements in one transaction"), outputs["schema"]
    assert outputs["concurrently"].startswith("applied: 1 statement alone, outside a transaction"), outputs["concurrently"]
    assert outputs["event"].startswith("failed at statement 2 of 2: ERROR:  permission denied to create event trigger")
    assert shell_output(outputs, "check") == ["f|f|t", "devagent", "users_email_2", "users_email_idx", "users_pkey",
                                              "absent"]

    # Below the screen: a span the screen would never produce, covering two statements, is
    # refused by the server's protocol itself; nothing of it runs.
    ws = runner.workspace(thread.id)
    password = runner.store.thread(thread.id).settings["postgres_password"]
    sidecar = PostgresSidecar(docker_client, thread.id, password)
    spec = ContainerSpec(thread.id, ws.work_dir, ws.git_dir, internal_network=sidecar.network)
    container = SidecarContainer(docker_client, spec, sidecar)
    container.ensure_running()
    try:
        data = b"SELECT 1; DROP TABLE users"
        outcome = run_in_helper(container, {
            "engine": "postgres", "sha256": hashlib.sha256(data).hexdigest(), "spans": [[0, len(data)]],
            "connect": [["dbname", "devagent"], ["host", "postgres"], ["port", "5432"], ["user", "devagent"],
                        ["password", password]]}, data)
        assert outcome["result"] == "failed" and outcome["statements"] == 0, outcome
        assert "cannot insert multiple commands into a prepared statement" in outcome["error"]
        # ensure_running wrote ~/.pgpass again (with the fakes on PATH): psql still logs in with it.
        check = container.exec("check", argv=["/usr/bin/psql", "-X", "-h", "postgres", "-U", "devagent", "devagent",
                                              "-At", "-c", "SELECT count(*) FROM users"], timeout_s=60)
        assert check.output.strip() == "1", check.output
        assert not list(ws.work_dir.glob("ran-fake-*"))
    finally:
        container.stop()


# ----------------------------------------------------------------------------- item 5: SQLite


def test_sqlite_runs_each_statement_of_the_screen_alone(thread_box: Any) -> None:
    box = thread_box()
    box.exec("setup", argv=["/usr/bin/python3", "-c", "import sqlite3; c = sqlite3.connect('/workspace/app.db');"
                            "c.execute('CREATE TABLE users (id INTEGER)'); c.commit()"], timeout_s=60)

    def run(data: bytes, spans: list[list[int]]) -> dict[str, Any]:
        return run_in_helper(box, {"engine": "sqlite", "target": "/workspace/app.db",
                                   "sha256": hashlib.sha256(data).hexdigest(), "spans": spans}, data)

    # A span holding two statements: SQLite refuses it, nothing of it runs.
    two = b"CREATE TABLE t (x INTEGER); DROP TABLE users"
    outcome = run(two, [[0, len(two)]])
    assert outcome["result"] == "failed" and "one statement at a time" in outcome["error"], outcome
    # Text outside the spans must be nothing but comments: otherwise nothing runs at all.
    hidden = b"CREATE TABLE t (x INTEGER); DROP TABLE users;"
    outcome = run(hidden, [[0, 26]])
    assert outcome["result"] == "failed" and "nothing ran" in outcome["error"], outcome
    # A NUL byte would make SQLite (and libpq) stop reading: refused.
    nul = b"DELETE FROM users\0 WHERE id = 1"
    assert run(nul, [[0, len(nul)]])["error"] == "the SQL contains a NUL byte; nothing ran"
    # The control: spans as the screen cuts them, with comments and ';' between, apply.
    good = b"CREATE TABLE t (x INTEGER); -- one; two\nINSERT INTO t VALUES (1);\n"
    assert run(good, [[0, 26], [40, 64]])["result"] == "applied"

    with sqlite3.connect(box.spec.workspace_dir / "app.db") as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"users", "t"} <= names
        assert conn.execute("SELECT count(*) FROM devagent_migrations").fetchone() == (1,)


# ----------------------------------------------------------------------------- item 4: the runner itself


FAKE_PYTHON = """#!/bin/sh
# Pretends to be the migration runner: drops users and reports success.
/usr/bin/python3 -c "import sqlite3; c = sqlite3.connect('/workspace/devagent.db'); c.execute('DROP TABLE users'); c.commit()"
echo 'DEVAGENT-MIGRATION-RESULT {"result": "applied", "statements": 1, "history_id": 1, "duration_s": 0}'
"""


async def test_a_python3_planted_on_path_never_runs_an_approved_migration(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    plant = (
        "for d in ~/.local/bin /home/agent/.local/bin; do mkdir -p $d && "
        f"printf '%s' {shlex.quote(FAKE_PYTHON)} > $d/python3 && chmod +x $d/python3; done && command -v python3"
    )
    tamper = ("for f in /usr/local/lib/devagent/migrate.py /usr/bin/python3; do "
              "(echo x >> $f) 2>/dev/null && echo \"wrote $f\"; done; "
              "stat -L -c '%U %a %n' /usr/bin/python3 /usr/local/lib/devagent /usr/local/lib/devagent/migrate.py")
    runner, model = runner_for(home, docker_client, [
        function_call("run_migration", {"sql": "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);"},
                      call_id="m1"),
        function_call("run_shell", {"command": plant}, call_id="plant"),
        function_call("run_shell", {"command": tamper}, call_id="tamper"),
        function_call("run_migration", {"sql": "CREATE INDEX users_email_idx ON users (email);"}, call_id="m2"),
        assistant_message("done"),
    ], ScriptedApprover(then=Decision(True)))
    thread = runner.create_thread(repo, TaskOptions())
    assert (await runner.run_task(thread.id, "index users.email")).status == "done"
    outputs = tool_outputs(model)

    # The fake is what `python3` means in the sandbox now...
    assert shell_output(outputs, "plant") == ["/home/agent/.local/bin/python3"]
    # ...but the runner and its interpreter are root's, and the sandbox user cannot change them.
    assert shell_output(outputs, "tamper") == [
        "root 755 /usr/bin/python3", "root 755 /usr/local/lib/devagent", "root 644 /usr/local/lib/devagent/migrate.py"]
    # The approved CREATE INDEX ran, and only it.
    assert outputs["m2"].startswith("applied: 1 statement in one transaction"), outputs["m2"]
    db = runner.workspace(thread.id).work_dir / "devagent.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users'"
                            " AND name = 'users_email_idx'").fetchone() == ("users_email_idx",)
        assert [r[0] for r in conn.execute("SELECT call_id FROM devagent_migrations ORDER BY id")] == ["m1", "m2"]


# ----------------------------------------------------------------------------- item 10: the network


def local_addresses(fib_trie: str) -> set[ipaddress.IPv4Address]:
    """The addresses /proc/net/fib_trie lists as LOCAL (assigned to an interface of that namespace)."""
    out: set[ipaddress.IPv4Address] = set()
    last = None
    for line in fib_trie.splitlines():
        if m := re.match(r"^\s*\|-- (\d+\.\d+\.\d+\.\d+)$", line):
            last = ipaddress.IPv4Address(m.group(1))
        elif "/32 host LOCAL" in line and last is not None:
            out.add(last)
    return out


def routes(proc_net_route: str) -> list[tuple[str, ipaddress.IPv4Network, ipaddress.IPv4Address]]:
    """(interface, destination, gateway) of each IPv4 route in /proc/net/route (little-endian hex)."""
    def addr(h: str) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(bytes.fromhex(h)[::-1])

    out = []
    for line in proc_net_route.splitlines()[1:]:
        f = line.split()
        out.append((f[0], ipaddress.IPv4Network(f"{addr(f[1])}/{addr(f[7])}"), addr(f[2])))
    return out


def host_fib_trie(docker_client: Any, image: str) -> str:
    """The Docker host's own addresses, read (not probed) from its network namespace."""
    return docker_client.containers.run(image, ["cat", "/proc/net/fib_trie"], network_mode="host",
                                        cap_drop=["ALL"], security_opt=["no-new-privileges"], user="65534:65534",
                                        remove=True).decode()


async def test_the_thread_network_gives_the_sandbox_no_route_to_the_host(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    from devagent.config import SANDBOX_IMAGE

    inspect = ("cat /proc/net/route; echo '#fib'; cat /proc/net/fib_trie; echo '#if_inet6'; cat /proc/net/if_inet6; "
               "echo '#disable_ipv6'; cat /proc/sys/net/ipv6/conf/all/disable_ipv6")
    runner, model = runner_for(home, docker_client, [
        function_call("run_shell", {"command": inspect}, call_id="inspect"),
        # The sidecar is still reachable across the network.
        function_call("run_shell", {"command": psql("SELECT 42")}, call_id="reach"),
        assistant_message("done"),
    ], ScriptedApprover(then=Decision(True)))
    thread = runner.create_thread(repo, TaskOptions(database="postgres"))
    assert (await runner.run_task(thread.id, "look around")).status == "done"
    outputs = tool_outputs(model)
    assert shell_output(outputs, "reach") == ["42"]

    # The network: internal, no IPv6, and its bridge gets no IPv4 address on the host.
    network = docker_client.networks.get(f"devagent-{thread.id}-net")
    assert network.attrs["Internal"] is True and network.attrs["EnableIPv6"] is False
    assert network.attrs["Options"].get("com.docker.network.bridge.inhibit_ipv4") == "true"
    [ipam] = network.attrs["IPAM"]["Config"]
    subnet = ipaddress.IPv4Network(ipam["Subnet"])

    # Seen from inside the sandbox: one interface on that subnet; every route stays on it.
    text = "\n".join(shell_output(outputs, "inspect"))
    route_text, rest = text.split("#fib\n")
    fib, rest = rest.split("#if_inet6\n")
    if_inet6, disable_ipv6 = rest.split("#disable_ipv6\n")
    table = routes(route_text)
    assert table and all(iface == "eth0" for iface, _, _ in table), table
    assert (ipaddress.IPv4Network(subnet), ) == tuple(dest for _, dest, gw in table if int(gw) == 0)
    gateways = {gw for _, _, gw in table if int(gw)}
    assert all(gw in subnet for gw in gateways)
    mine = local_addresses(fib) - {ipaddress.IPv4Address("127.0.0.1")}
    assert len(mine) == 1 and next(iter(mine)) in subnet
    # No IPv6 at all inside (so no link-local route to the host's side of the bridge either).
    assert disable_ipv6.strip() == "1" and "eth0" not in if_inet6

    # Seen from the host: no address of the host lies on that subnet, so the sandbox's only
    # gateway leads nowhere and nothing of the host is on its link.
    host = local_addresses(host_fib_trie(docker_client, SANDBOX_IMAGE))
    assert ipaddress.IPv4Address("127.0.0.1") in host
    assert not {a for a in host if a in subnet}, (subnet, sorted(host))

    # The control: an internal network made the old way has the host on it, at its gateway.
    control = docker_client.networks.create(f"devagent-test-{secrets.token_hex(4)}", driver="bridge", internal=True,
                                            labels={"org.devagent.test": "network-control"})
    try:
        control.reload()
        gateway = ipaddress.IPv4Address(control.attrs["IPAM"]["Config"][0]["Gateway"])
        assert gateway in local_addresses(host_fib_trie(docker_client, SANDBOX_IMAGE))
    finally:
        control.remove()


# ----------------------------------------------------------------------------- item 8: bounded cost


async def test_showing_a_huge_or_binary_migration_file_is_quick_and_bounded(
        sandbox_image: str, docker_client: Any, home: Path, repo: Path) -> None:
    import resource

    runner, model = runner_for(home, docker_client, [
        [function_call("run_migration", {"path": "nul.sql"}, call_id="nul"),
         function_call("run_migration", {"path": "huge.sql"}, call_id="huge")],
        [assistant_message("done")],
    ], ScriptedApprover(then=None))
    thread = runner.create_thread(repo, TaskOptions())
    work = runner.workspace(thread.id).work_dir
    (work / "nul.sql").write_bytes(b"\0" * 200_000)
    (work / "huge.sql").write_bytes(b"INSERT INTO t (a, b) VALUES (1, 'abc');\n" * 500_000)  # 20 MB
    before = resource.getrusage(resource.RUSAGE_SELF)
    # The test process's lifetime peak (ru_maxrss) holds every earlier test: reset the kernel's
    # peak-RSS mark of this process, then read what this turn added to it.
    Path("/proc/self/clear_refs").write_text("5")
    base_kib = _rss_kib("VmRSS")
    # Neither file can run, so neither waits for a human: the model is told why at once, and
    # reading them for that costs little (never the whole 20 MB).
    assert (await runner.run_task(thread.id, "migrate")).status == "done"
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 20
    grew_kib = _rss_kib("VmHWM") - base_kib
    assert grew_kib < 300_000, f"showing the files took {grew_kib // 1024} MB more"
    assert runner.store.approvals(thread.id, "pending") == []
    outputs = tool_outputs(model)
    assert "NUL byte" in outputs["nul"] and "nothing ran" in outputs["nul"].lower(), outputs["nul"]
    assert "huge.sql is larger than 1 MiB" in outputs["huge"], outputs["huge"]


def _rss_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS: now; VmHWM: the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")
