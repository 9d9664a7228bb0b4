"""The per-thread container, on the real Docker engine: persistence, hardening, limits, exec."""

from __future__ import annotations

import subprocess
import sys
import re
import textwrap
from pathlib import Path


from devagent.config import THREAD_LABEL, sandbox_user
from devagent.sandbox import OutputCap


def test_files_and_installed_tools_persist_across_stop_start_and_processes(thread_box, home: Path) -> None:
    box = thread_box()
    setup = box.exec(
        "echo kept > notes.txt && mkdir -p ~/.local/bin && "
        "printf '#!/bin/sh\\necho tool-ok\\n' > ~/.local/bin/mytool && chmod +x ~/.local/bin/mytool"
    )
    assert setup.exit_code == 0, setup.output
    box.stop()

    # Turn 2, from a new process: the same container is started again.
    script = textwrap.dedent(f"""
        import docker
        from pathlib import Path
        from devagent.sandbox import ContainerSpec, ThreadContainer
        root = Path({str(home / "threads" / box.spec.thread_id)!r})
        box = ThreadContainer(docker.from_env(), ContainerSpec({box.spec.thread_id!r}, root / "workspace", root / "git"))
        box.ensure_running()
        print(box.exec("cat notes.txt && mytool").output)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "kept" in out and "tool-ok" in out


def test_runs_unprivileged_as_the_mapped_uid_with_no_capabilities(thread_box) -> None:
    box = thread_box()
    uid, gid = sandbox_user()
    result = box.exec("id -u; id -g; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; touch owned.txt")
    lines = result.output.split()
    assert lines[0] == str(uid) != "0"
    assert lines[1] == str(gid)
    assert "0000000000000000" in result.output  # CapEff: every capability dropped
    assert "NoNewPrivs:\t1" in result.output.replace(" ", "\t") or "NoNewPrivs: 1" in result.output
    assert (box.spec.workspace_dir / "owned.txt").stat().st_uid == uid


def test_container_is_labelled_and_limited(thread_box, docker_client) -> None:
    box = thread_box()
    attrs = docker_client.api.inspect_container(box.spec.name)
    host = attrs["HostConfig"]
    assert attrs["Config"]["Labels"][THREAD_LABEL] == box.spec.thread_id
    assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == ["KILL", "SETGID", "SETUID"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["NanoCpus"] > 0
    assert host["NetworkMode"] == "none"
    assert not any("docker.sock" in m["Source"] for m in attrs["Mounts"])


def test_network_is_off_by_default(thread_box) -> None:
    box = thread_box()
    result = box.exec("cat /proc/net/dev; python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), 3)\"")
    interfaces = [line.split(":")[0].strip() for line in result.output.splitlines() if ":" in line and "|" not in line]
    assert "eth0" not in interfaces
    assert result.exit_code != 0 and "unreachable" in result.output.lower()


def test_network_is_on_when_the_thread_asked_for_it(thread_box) -> None:
    box = thread_box(network=True)
    result = box.exec("cat /proc/net/dev; cat /proc/net/route")
    assert "eth0" in result.output
    assert "00000000" in result.output  # a default route exists


def test_timeout_kills_the_process_tree_and_the_container_survives(thread_box) -> None:
    box = thread_box()
    result = box.exec("sleep 1000 & sleep 1000; echo never", timeout_s=2)
    assert result.timed_out and result.exit_code is None
    assert result.duration_s < 30
    assert "never" not in result.output
    after = box.exec("ps -u \"$(id -u)\" -o comm= | grep -c '^sleep' || true")
    assert after.exit_code == 0
    assert after.output.split()[0] == "0"


def test_huge_output_is_capped_with_head_tail_and_total(thread_box) -> None:
    box = thread_box()
    streamed = []
    result = box.exec("echo FIRST; head -c 104857600 /dev/zero | tr '\\0' x; echo; echo LAST",
                      on_output=lambda text: streamed.append(len(text)))
    assert result.exit_code == 0
    assert result.total_bytes == 104857600 + len("FIRST\n") + 1 + len("LAST\n")
    assert result.truncated
    assert result.output.startswith("FIRST")
    assert result.output.rstrip().endswith("LAST")
    assert len(result.output) < 64 * 1024
    assert f"printed {result.total_bytes} bytes" in result.output
    assert sum(streamed) >= 104857600  # live streaming saw everything


def test_non_utf8_output_never_crashes(thread_box) -> None:
    result = thread_box().exec("printf 'ok \\xff\\xfe\\x80 done'")
    assert result.exit_code == 0
    assert result.output.startswith("ok ") and result.output.endswith(" done")


def test_host_environment_is_absent_inside(thread_box, monkeypatch) -> None:
    monkeypatch.setenv("DEVAGENT_CANARY_SECRET", "canary-7f3a")
    box = thread_box()
    result = box.exec("env; cat /proc/1/environ | tr '\\0' '\\n'")
    assert "canary-7f3a" not in result.output
    assert "OPENAI_API_KEY" not in result.output


def test_output_cap_keeps_memory_flat() -> None:
    cap = OutputCap(head=10, tail=10)
    for _ in range(10_000):
        cap.feed(b"0123456789" * 100)
    assert cap.total == 10_000 * 1000
    assert len(cap.head) == 10 and len(cap.tail) == 10


def test_discard_leaves_nothing_behind(cli, home: Path, repo: Path, docker_client, sandbox_image, llm) -> None:
    from conftest import git
    from llm_stub import tool_call

    llm.script({"tool_calls": [tool_call("run_shell", {"command": "echo hi > made.txt"}, "c1")]}, {"content": "done"})
    started = cli("task", "make a file", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    assert started.returncode == 3, started.stderr
    import json

    thread_id = json.loads(started.stdout.splitlines()[-1])["thread"]
    assert cli("approve", thread_id, "--all").returncode == 0
    assert cli("resume", thread_id).returncode == 0
    label = f"{THREAD_LABEL}={thread_id}"
    assert docker_client.containers.list(all=True, filters={"label": label})

    gone = cli("discard", thread_id, "--yes")
    assert gone.returncode == 0, gone.stderr
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert not (home / "threads" / thread_id).exists()
    assert f"devagent/{thread_id}" not in git(repo, "branch", "--all")
    assert thread_id not in cli("threads").stdout
    import sqlite3

    sessions = sqlite3.connect(home / "sessions.db")
    assert sessions.execute("SELECT count(*) FROM agent_messages WHERE session_id=?", (thread_id,)).fetchone() == (0,)


def test_docker_unreachable_is_one_clear_line(cli) -> None:
    result = cli("task", "anything", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Docker engine")
    assert "devagent sandbox doctor" in lines[0]


def test_doctor_explains_a_missing_daemon(cli) -> None:
    result = cli("sandbox", "doctor", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1
    assert "daemon is not running" in result.stdout and "Traceback" not in result.stderr


def test_venv_and_pip_install_of_a_local_package_work_offline(thread_box) -> None:
    box = thread_box()
    project = (
        "printf '[build-system]\\nrequires = [\"setuptools\"]\\nbuild-backend = \"setuptools.build_meta\"\\n"
        "[project]\\nname = \"tinypkg\"\\nversion = \"0.1\"\\n' > pyproject.toml && echo 'VALUE = 42' > tinypkg.py"
    )
    result = box.exec(
        f"set -e; {project}\n"
        # A venv and a plain pip install into it, no network: the build takes Debian's wheels.
        "python3 -m venv .venv && .venv/bin/pip install -q --no-index .\n"
        "(cd /tmp && /workspace/.venv/bin/python -c 'import tinypkg; print(\"venv\", tinypkg.__file__, tinypkg.VALUE)')\n"
        # Outside a venv, pip installs for the user (--user, and by itself without it).
        "pip install -q --no-index .\n"
        "pip install -q --user --no-index --force-reinstall .\n"
        "(cd /tmp && python3 -c 'import tinypkg; print(\"user\", tinypkg.__file__)')\n"
        "make test",
        timeout_s=900,
    )
    assert result.exit_code == 0, result.output
    assert "venv /workspace/.venv/lib/python3.11/site-packages/tinypkg.py 42" in result.output
    assert "user /home/agent/.local/lib/python3.11/site-packages/tinypkg.py" in result.output
    assert "tests pass" in result.output
    assert "Can not perform a '--user' install" not in result.output


def test_a_container_made_by_an_older_devagent_is_a_clear_error(docker_client, sandbox_image, tmp_path: Path) -> None:
    import os

    import pytest

    from devagent.config import BASE_IMAGE
    from devagent.errors import DevagentError
    from devagent.sandbox import ContainerSpec, ThreadContainer

    thread_id = "old" + os.urandom(3).hex()
    box = ThreadContainer(docker_client, ContainerSpec(thread_id, tmp_path, tmp_path))
    # The base image has no devagent-run, like a container made before it moved there.
    docker_client.containers.run(BASE_IMAGE, ["sleep", "infinity"], name=box.spec.name, detach=True,
                                 network_mode="none", labels={THREAD_LABEL: thread_id})
    try:
        box.ensure_running()
        with pytest.raises(DevagentError, match=f"made by an older devagent.*docker rm -f {box.spec.name}"):
            box.exec("true", timeout_s=30, workdir="/")
    finally:
        box.remove()


def _megabyte_turn(cli, llm, env: dict[str, str] | None = None) -> str:
    """A turn whose one command prints 1 MB (a first and a last line around it); returns what the
    model was sent back as that command's result."""
    import json

    from llm_stub import tool_call

    command = "echo FIRST; head -c 1000000 /dev/zero | tr '\\0' x; echo; echo LAST"
    llm.script({"tool_calls": [tool_call("run_shell", {"command": command}, "big")]}, {"content": "done"})
    started = cli("task", "print a lot", "--base-url", llm.url, "--model", "stub", "--no-input", "--json", env=env)
    assert started.returncode == 3, started.stderr
    thread_id = json.loads(started.stdout.splitlines()[-1])["thread"]
    assert cli("approve", thread_id, "big").returncode == 0
    resumed = cli("resume", thread_id, "--no-input", env=env)
    assert resumed.returncode == 0, resumed.stderr
    return llm.tool_outputs()["big"]


def test_the_model_receives_at_most_16_kib_of_a_megabyte_output(cli, llm, sandbox_image) -> None:
    sent = _megabyte_turn(cli, llm)
    assert len(sent.encode()) <= 16 * 1024
    assert sent.startswith("[exit code 0;") and "1000012 bytes of output" in sent
    assert "\nFIRST\n" in sent and sent.rstrip().endswith("LAST")
    cut = re.search(r"\[\.\.\. output cut: bytes (\d+)-(\d+) omitted \((\d+) bytes\); kept the first (\d+) and "
                    r"the last (\d+); the command printed 1000012 bytes in all \.\.\.\]", sent)
    assert cut, sent[:300]
    start, end, omitted, head, tail = map(int, cut.groups())
    assert start == head and end - start == omitted and head + omitted + tail == 1000012
    assert 7000 < head and 7000 < tail  # most of the budget is output, not bookkeeping


def test_the_output_limit_is_configurable(cli, llm, sandbox_image) -> None:
    sent = _megabyte_turn(cli, llm, env={"DEVAGENT_OUTPUT_LIMIT": "4096"})
    assert len(sent.encode()) <= 4096
    assert "output cut" in sent and sent.rstrip().endswith("LAST")
    assert cli("config", env={"DEVAGENT_OUTPUT_LIMIT": "10"}).returncode != 0
