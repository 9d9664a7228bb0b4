"""Resource abuse inside a thread's container, and symlinks that point out of the workspace.

Every abuse runs for real on the Docker engine with the default limits; after each one the same
container must still answer, with nothing of the abuse left running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
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


def test_nothing_survives_the_turn_either(box: ThreadContainer) -> None:
    """A timed-out command's processes are killed, and a stopped container runs nothing."""
    result = box.exec("sleep 1000 & sleep 1000", timeout_s=2)
    assert result.timed_out
    assert_answers(box)
    box.stop()
    box.ensure_running()
    assert_answers(box)


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
