"""Resource abuse inside a thread's container, and symlinks that point out of the workspace.

Every abuse runs for real on the Docker engine with the default limits; after each one the same
container must still answer, with nothing of the abuse left running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from agents.testing import ScriptedModel, assistant_message, function_call

from devagent.config import SandboxLimits, sandbox_user
from devagent.display import render_exact
from devagent.runner import Decision, TaskOptions, ThreadRunner
from devagent.sandbox import ContainerSpec, ThreadContainer
from devagent.store import Store
from devagent.workspace import ThreadWorkspace

from agent_helpers import ScriptedApprover, tool_outputs

LIMITS = SandboxLimits()


@pytest.fixture(scope="module")
def box(docker_client, sandbox_image, tmp_path_factory):
    """One container for the whole module (the abuses run one after the other in it)."""
    root = tmp_path_factory.mktemp("abuse")
    repo = root / "project"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.name", "T"], ["config", "user.email", "t@e"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    (repo / "README.md").write_text("# project\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "initial"], check=True)
    thread_id = "abuse" + os.urandom(3).hex()
    ws = ThreadWorkspace(thread_id, root / "threads" / thread_id)
    ws.create(repo, owner=sandbox_user())
    container = ThreadContainer(docker_client, ContainerSpec(thread_id, ws.work_dir, ws.git_dir, network=False))
    container.ensure_running()
    yield container
    container.remove()


def leftovers(box: ThreadContainer) -> list[str]:
    """Processes of the sandbox user other than the command asking."""
    result = box.exec("ps -u \"$(id -u)\" -o pid=,ppid=,comm= | awk -v me=$$ '$1 != me && $2 != me'", timeout_s=30)
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line.strip()]


def assert_answers(box: ThreadContainer) -> None:
    result = box.exec("echo still-here", timeout_s=30)
    assert result.exit_code == 0 and result.output == "still-here\n", result.output
    assert leftovers(box) == []


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_the_container_has_the_documented_limits(box: ThreadContainer, docker_client) -> None:
    host = docker_client.api.inspect_container(box.spec.name)["HostConfig"]
    assert host["PidsLimit"] == LIMITS.pids
    assert host["Memory"] == host["MemorySwap"] > 0  # no swap on top of the memory limit
    assert host["NanoCpus"] == int(LIMITS.cpus * 1e9)
    assert host["Privileged"] is False and host["CapDrop"] == ["ALL"]
    # Root in the container (PID 1, devagent-run) gets these back; the sandbox user has none.
    assert sorted(host["CapAdd"]) == ["KILL", "SETGID", "SETUID"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == "none"


def test_fork_bomb_hits_the_pids_limit_and_the_container_survives(box: ThreadContainer) -> None:
    # How far can a command fork? Not past the pids limit.
    count = box.exec(
        "python3 -c \"import os, time, errno\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('forked', n, errno.errorcode[e.errno])\"",
        timeout_s=60,
    )
    forked, n, code = count.output.split("\n")[0].split()
    assert forked == "forked" and 0 < int(n) < LIMITS.pids and code == "EAGAIN", count.output
    assert "[devagent] stopped" in count.output  # the sleeping children did not outlive it
    assert_answers(box)

    bomb = box.exec(":(){ :|:& };:", timeout_s=20)
    assert bomb.duration_s < 60
    assert "[devagent] stopped" in bomb.output or bomb.timed_out, bomb.output[-500:]
    assert_answers(box)


def test_memory_bomb_is_killed_with_a_clear_result_and_the_container_survives(box: ThreadContainer) -> None:
    result = box.exec(
        "python3 -c \"chunks = []\nwhile True: chunks.append(bytearray(16 * 1024 * 1024))\"", timeout_s=120,
    )
    assert not result.timed_out
    assert result.exit_code == 137  # SIGKILL from the kernel's OOM killer
    assert "[devagent] out of memory" in result.output
    assert "memory limit" in result.for_model()
    assert_answers(box)


def test_yes_forever_is_stopped_by_the_timeout_with_output_capped(box: ThreadContainer) -> None:
    result = box.exec("yes", timeout_s=3)
    assert result.timed_out and result.exit_code is None
    assert 3 <= result.duration_s < 30
    assert result.total_bytes > 10 * 1024 * 1024 and result.truncated
    assert len(result.output) < LIMITS.output_head + LIMITS.output_tail + 1024
    assert f"printed {result.total_bytes} bytes" in result.output
    assert result.for_model().startswith("[timed out after")
    assert_answers(box)


def test_a_gibibyte_of_output_keeps_host_memory_flat(box: ThreadContainer) -> None:
    before = rss_bytes()
    peak = before
    seen = 0

    def sample(text: str) -> None:
        nonlocal peak, seen
        seen += len(text)
        if seen >= 16 * 1024 * 1024:
            seen = 0
            peak = max(peak, rss_bytes())

    result = box.exec("head -c 1073741824 /dev/zero | tr '\\0' x", timeout_s=600, on_output=sample)
    peak = max(peak, rss_bytes())
    assert result.exit_code == 0 and result.total_bytes == 1 << 30
    assert result.truncated and len(result.output) < 64 * 1024
    assert peak - before < 100 * 1024 * 1024, f"host RSS grew by {(peak - before) >> 20} MiB"


def test_binary_output_is_decoded_with_replacement(box: ThreadContainer) -> None:
    streamed: list[str] = []
    result = box.exec("head -c 3000000 /dev/urandom; printf '\\033]8;;http://x\\033\\\\\\x00\\xff'",
                      timeout_s=60, on_output=streamed.append)
    assert result.exit_code == 0 and result.total_bytes == 3000000 + 17
    for text in (result.output, "".join(streamed), result.for_model()):
        text.encode("utf-8")  # valid text: no lone surrogates reach the model or the screen
    assert "\ufffd" in result.output
    shown = render_exact(result.output)
    assert "\x1b" not in shown and "\x00" not in shown


def test_a_command_that_closes_its_output_and_keeps_running_is_killed(box: ThreadContainer) -> None:
    for command in ("exec >&- 2>&-; sleep 1000", "exec >/dev/null 2>&1 </dev/null; sleep 1000"):
        result = box.exec(command, timeout_s=3)
        assert result.timed_out and result.exit_code is None, (command, result)
        assert result.duration_s < 30
        assert_answers(box)


@pytest.mark.parametrize("command", [
    "sleep 1000 &",
    "nohup sleep 1000 >/dev/null 2>&1 &",
    "setsid sleep 1000 >/dev/null 2>&1 < /dev/null &",
    "( ( exec sleep 1000 ) & ) &",
    "sleep 1000 & disown",
    "python3 -c \"import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\"",
])
def test_a_background_process_left_behind_does_not_survive_and_the_output_says_so(
        box: ThreadContainer, command: str) -> None:
    result = box.exec(command, timeout_s=30)
    assert not result.timed_out and result.duration_s < 20
    # (A double fork may still be on its way out when counted: 1 or 2 processes.)
    assert re.search(r"\[devagent\] stopped [12] process\(es\) the command left running", result.output), result.output
    assert_answers(box)


def test_a_process_whose_name_forges_its_status_lines_is_still_stopped(box: ThreadContainer, docker_client) -> None:
    """devagent-run tells processes apart by /proc/PID/status; a name cannot pass for a zombie's
    or root's state lines there (the kernel escapes a newline in a name)."""
    forged = "python3 -c \"import ctypes, os, time\nif os.fork() == 0:\n" \
             "    ctypes.CDLL(None).prctl(15, b'x\\nState:\\tZ (zombie)\\nUid:\\t0\\t0\\t0\\t0')\n" \
             "    time.sleep(1000)\""  # 15: PR_SET_NAME
    result = box.exec(forged, timeout_s=30)
    assert not result.timed_out and result.duration_s < 20
    assert "[devagent] stopped 1 process(es) the command left running" in result.output, result.output
    assert sandbox_user_processes(docker_client, box) == []


def test_nothing_survives_the_turn_either(box: ThreadContainer) -> None:
    """A timed-out command's processes are killed, and a stopped container runs nothing."""
    result = box.exec("sleep 1000 & sleep 1000", timeout_s=2)
    assert result.timed_out
    assert_answers(box)
    box.stop()
    box.ensure_running()
    assert_answers(box)


# ------------------------------------------------------------------ PID 1 and devagent's own processes

LIST_PROCESSES = """
import os
for pid in sorted(int(p) for p in os.listdir('/proc') if p.isdigit()):
    try:
        status = dict(l.split(':', 1) for l in open(f'/proc/{pid}/status').read().splitlines() if ':' in l)
    except OSError:
        continue
    print(pid, status['Uid'].split()[0], status['State'].split()[0], status['Name'].strip(), sep='\\t')
"""


def processes(docker_client, box: ThreadContainer) -> list[tuple[int, int, str, str]]:
    """Every process in the container, as root sees it through /proc: (pid, uid, state, name).

    Read through a docker exec of its own, so nothing of devagent-run runs in between. (A
    devagent-run starting meanwhile stops it, as it stops every other process: then again.)"""
    for _ in range(5):
        listing = docker_client.containers.get(box.spec.name).exec_run(
            ["/usr/bin/python3", "-I", "-S", "-c", LIST_PROCESSES], user="0:0")
        if listing.exit_code == 0:
            rows = [line.split("\t") for line in listing.output.decode().splitlines()]
            return [(int(pid), int(uid), state, name) for pid, uid, state, name in rows]
    raise AssertionError(f"cannot list the container's processes: {listing.output!r}")


def sandbox_user_processes(docker_client, box: ThreadContainer) -> list[tuple[int, int, str, str]]:
    uid = sandbox_user()[0]
    return [p for p in processes(docker_client, box) if p[1] == uid and p[2] != "Z"]


def pid_1(docker_client, box: ThreadContainer) -> tuple[int, int, str, str]:
    first = processes(docker_client, box)[0]
    assert first[0] == 1
    return first


TOUCH_PROCESS = r"""
echo "status $1: $(grep -E '^(Uid|CapEff):' /proc/$1/status | tr '\t\n' '  ')"
kill -9 "$1" 2>&1; kill -STOP "$1" 2>&1
/usr/bin/python3 -c '
import ctypes, os, sys
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace", pid, libc.ptrace(16, pid, None, None), os.strerror(ctypes.get_errno()))  # PTRACE_ATTACH
try:
    with open(f"/proc/{pid}/mem", "r+b") as mem:
        print("mem", pid, "OPENED")
except OSError as exc:
    print("mem", pid, exc.strerror)
' "$1"
"""


def test_commands_cannot_trace_write_or_signal_pid_1_or_devagent_run(box: ThreadContainer, docker_client) -> None:
    first = pid_1(docker_client, box)
    assert first[1] == 0 and first[3] == "python3"
    command = (
        f"touch_process() {{ {TOUCH_PROCESS} }}\n"
        "wrapper=$(awk '/^PPid:/{print $2}' /proc/$$/status)\n"  # devagent-run started this bash
        "touch_process 1; touch_process $wrapper\n"
        "kill -9 -1; echo 'survived kill -1'\n"
        "grep -E '^Cap(Prm|Eff)' /proc/self/status"
    )
    result = box.exec(command, timeout_s=60)
    out = result.output
    assert result.exit_code == 0 and not result.timed_out, out
    wrapper = int(re.findall(r"^ptrace (\d+) ", out, re.M)[1])
    assert wrapper not in (0, 1)
    for pid in (1, wrapper):
        # Both run as root, another uid than the sandbox user's: nothing reaches them.
        assert re.search(rf"^status {pid}: Uid: 0 0 0 0 ", out, re.M), out
        assert f"ptrace {pid} -1 Operation not permitted" in out
        assert f"mem {pid} Permission denied" in out
    assert out.count("Operation not permitted") == 2 * 2 + 2, out  # kill -9 and -STOP twice; ptrace twice
    assert "OPENED" not in out
    assert re.search(r"^status 1: .*CapEff: 0000000000000000", out, re.M), out  # PID 1 gave up its capabilities
    # The command's own kill -1 reached only the sandbox user's processes.
    assert "survived kill -1" in out
    assert "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000" in out
    assert pid_1(docker_client, box) == first
    assert_answers(box)


MOVER = "import os\nwhile True:\n    if os.fork():\n        os._exit(0)\n"


@pytest.mark.parametrize("command", [
    # Double-forked and setsid'd: its parent is PID 1, its session its own.
    "python3 -c \"import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\"",
    # Forks and exits in a loop: never the same pid twice.
    f"setsid python3 -c '{MOVER}' </dev/null >/dev/null 2>&1 & sleep 0.5",
    # The same, each generation also stopping every other process of the user (the command
    # included, so this one ends at its timeout).
    "setsid python3 -c 'import os, signal\nwhile True:\n    if os.fork():\n        os._exit(0)\n"
    "    try:\n        os.kill(-1, signal.SIGSTOP)\n    except OSError:\n        pass\n' </dev/null >/dev/null 2>&1 & wait",
], ids=["double-fork", "fork-loop", "fork-loop-stopping-everything"])
def test_no_process_of_the_sandbox_user_outlives_its_command(box: ThreadContainer, docker_client, command: str) -> None:
    first = pid_1(docker_client, box)
    result = box.exec(command, timeout_s=5)
    # Looked at the moment the command has returned, from outside it.
    assert sandbox_user_processes(docker_client, box) == []
    assert result.timed_out or "[devagent] stopped" in result.output, result.output
    assert result.duration_s < 30
    assert pid_1(docker_client, box) == first
    assert_answers(box)


def _start_exec_in_a_process_then_kill_it(box: ThreadContainer, docker_client, command: str,
                                           timeout_s: float) -> float:
    """Run `command` through a devagent process of its own; SIGKILL that process once the
    command runs. Returns the time (monotonic) the command was seen running."""
    script = textwrap.dedent(f"""
        import docker
        from pathlib import Path
        from devagent.sandbox import ContainerSpec, ThreadContainer
        box = ThreadContainer(docker.from_env(), ContainerSpec({box.spec.thread_id!r},
                              Path({str(box.spec.workspace_dir)!r}), Path({str(box.spec.git_dir)!r})))
        box.exec({command!r}, timeout_s={timeout_s!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not any(p[3] == "sleep" for p in sandbox_user_processes(docker_client, box)):
            assert proc.poll() is None and time.monotonic() < deadline, "the command never started"
            time.sleep(0.1)
        seen = time.monotonic()
    finally:
        proc.kill()
        proc.wait()
    return seen


def test_a_timeout_holds_when_devagent_is_killed(box: ThreadContainer, docker_client) -> None:
    seen = _start_exec_in_a_process_then_kill_it(box, docker_client, "sleep 1000", timeout_s=6)
    time.sleep(max(0.0, seen + 2 - time.monotonic()))
    # devagent is gone, the command is not: what ends it is the timeout inside the container.
    assert any(p[3] == "sleep" for p in sandbox_user_processes(docker_client, box))
    while any(p[3] == "sleep" for p in sandbox_user_processes(docker_client, box)):
        assert time.monotonic() < seen + 6 + 15, "the command outlived its timeout"
        time.sleep(0.2)
    assert time.monotonic() > seen + 3
    assert_answers(box)


def test_a_deadline_left_by_a_killed_devagent_never_reaches_a_later_command(box: ThreadContainer,
                                                                          docker_client) -> None:
    _start_exec_in_a_process_then_kill_it(box, docker_client, "sleep 1000", timeout_s=3)
    # The next command ends the one left running, then outlives that one's deadline.
    result = box.exec("sleep 6; echo finished", timeout_s=60)
    assert result.exit_code == 0 and not result.timed_out, result.output
    assert result.output == "finished\n"
    assert sandbox_user_processes(docker_client, box) == []


def test_devagents_helpers_ignore_programs_planted_by_commands(thread_box, docker_client) -> None:
    box = thread_box()
    fakes = "sh dash bash python3 python3.11 kill sleep setpriv timeout cat env ps id grep awk sed".split()
    plant = box.exec(
        "mkdir -p ~/.local/bin && cd ~/.local/bin && for f in " + " ".join(fakes) + "; do "
        "printf '#!/bin/sh\\necho planted > /tmp/planted-%s; echo FAKE-%s\\n' $f $f > $f; chmod +x $f; done; "
        "for d in /usr/local/bin /usr/local/sbin /usr/local/lib/devagent /usr/bin /bin; do "
        "/bin/cp ~/.local/bin/sh $d/sh 2>/dev/null && echo \"WROTE $d\"; done; "
        "/bin/cp ~/.local/bin/sh /usr/local/lib/devagent/devagent-run 2>/dev/null && echo WROTE-RUN; "
        "command -v python3", timeout_s=30)
    assert plant.exit_code == 0 and "WROTE" not in plant.output, plant.output
    assert plant.output.strip().endswith("/home/agent/.local/bin/python3")  # the user's own PATH is theirs

    left = box.exec("/bin/sleep 1000 >/dev/null 2>&1 &", timeout_s=30)
    assert "[devagent] stopped 1 process(es)" in left.output, left.output
    assert sandbox_user_processes(docker_client, box) == []
    late = box.exec("/bin/sleep 1000", timeout_s=3)
    assert late.timed_out and late.duration_s < 30
    assert sandbox_user_processes(docker_client, box) == []
    # devagent's own helpers (argv=) find their programs in the system directories only.
    helper = box.exec("helper", argv=["python3", "-c", "import sys; print(sys.executable)"], timeout_s=30)
    assert helper.exit_code == 0 and helper.output == "/usr/bin/python3\n", helper.output
    shell = box.exec("helper", argv=["sh", "-c", "command -v cat"], timeout_s=30)
    assert shell.output == "/usr/bin/cat\n", shell.output
    # PID 1 after a restart is still devagent's init, started by absolute path.
    box.stop()
    box.ensure_running()
    container = docker_client.containers.get(box.spec.name)
    init = container.exec_run(["/bin/cat", "/proc/1/cmdline"], user="0:0").output
    assert init.split(b"\0")[:2] == [b"/usr/bin/python3", b"-I"], init
    assert b"planted" not in container.exec_run(["/bin/ls", "/tmp"], user="0:0").output
    for result in (left, late, helper, shell):
        assert "FAKE" not in result.output


# ------------------------------------------------------------------ symlinks made in the sandbox


async def test_symlinks_made_by_an_approved_command_never_lead_file_tools_outside(
        home: Path, repo: Path, tmp_path: Path, docker_client, sandbox_image) -> None:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    secret = outside / "secret.txt"
    secret.write_text("TOP-SECRET-CANARY\n")
    (outside / "dir" / "inner.txt").write_text("TOP-SECRET-CANARY inner\n")
    before = sorted(p.name for p in outside.rglob("*"))

    make_links = " && ".join([
        "ln -s / rootfs",
        "ln -s /etc/passwd passwd",
        f"ln -s {secret} secret",
        f"ln -s {outside} outdir",
        "ln -s ../../../../../../.. up",
        "ln -s up/up/up chain",
        "mkdir -p nested/deeper && ln -s ../../outdir nested/deeper/hop",
        "ln -s .git gitdir",
        "ln -s /workspace/.git/config gitconfig",
        f"ln -s {outside}/new.txt dangling",
        "ln -s README.md alias.md",
    ])
    reads = ["rootfs/etc/hostname", "passwd", "secret", "outdir/secret.txt", "outdir/dir/inner.txt",
             "up", "chain/etc/passwd", "nested/deeper/hop/secret.txt", "gitdir/config", "gitconfig", "dangling"]
    writes = ["secret", "outdir/secret.txt", "outdir/planted.txt", "nested/deeper/hop/planted.txt",
              "dangling", "up/planted.txt", "rootfs/tmp/planted.txt", "alias.md", "gitconfig"]
    steps = [
        [function_call("run_shell", {"command": make_links}, call_id="ln")],
        [function_call("read_file", {"path": p}, call_id=f"r{i}") for i, p in enumerate(reads)]
        + [function_call("write_file", {"path": p, "content": "PWNED\n"}, call_id=f"w{i}") for i, p in enumerate(writes)]
        + [function_call("edit_file", {"path": "secret", "old": "TOP", "new": "PWNED"}, call_id="e1"),
           function_call("edit_file", {"path": "outdir/secret.txt", "old": "TOP", "new": "PWNED"}, call_id="e2"),
           function_call("list_files", {"path": "."}, call_id="l1"),
           function_call("list_files", {"path": "outdir"}, call_id="l2"),
           function_call("search", {"pattern": "SECRET|root:"}, call_id="g1"),
           function_call("search", {"pattern": "SECRET", "path": "nested/deeper/hop"}, call_id="g2")],
        [assistant_message("done")],
    ]
    model = ScriptedModel(steps)
    runner = ThreadRunner(Store(home), model=model, approver=ScriptedApprover(then=Decision(True)))
    thread = runner.create_thread(repo, TaskOptions())
    outcome = await runner.run_task(thread.id, "follow the links")
    assert outcome.status == "done"

    outputs = tool_outputs(model)
    assert "exit code 0" in outputs["ln"], outputs["ln"]
    everything = json.dumps(outputs)
    assert "TOP-SECRET-CANARY" not in everything and "root:x:0:0" not in everything
    for i, path in enumerate(reads):
        assert outputs[f"r{i}"].startswith("error:"), (path, outputs[f"r{i}"])
    for i, path in enumerate(writes):
        assert outputs[f"w{i}"].startswith("error:"), (path, outputs[f"w{i}"])
    assert outputs["e1"].startswith("error:") and outputs["e2"].startswith("error:")
    listed = outputs["l1"].splitlines()
    assert "alias.md" in listed and not any(name.startswith(("outdir", "rootfs", "up", "chain", "secret", "passwd",
                                                              "nested", "gitdir", "gitconfig", "dangling"))
                                            for name in listed), listed
    assert outputs["l2"].startswith("error:")

    # Nothing outside changed, and nothing was created there.
    assert secret.read_text() == "TOP-SECRET-CANARY\n"
    assert sorted(p.name for p in outside.rglob("*")) == before
    assert "PWNED" not in Path("/etc/passwd").read_text()
    ws = runner.workspace(thread.id)
    assert not (ws.git_dir / "config").read_text().count("PWNED")
    # The link inside the workspace was not written through either.
    assert (ws.work_dir / "README.md").read_text() == "# project\n"
