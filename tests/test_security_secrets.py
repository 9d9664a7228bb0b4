"""Secrets: nothing of the host's environment, credentials or Docker socket reaches the sandbox, and
the API key never reaches the audit log, the saved state or `--json` output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import git
from devagent.sandbox import CONTAINER_ENV
from llm_stub import tool_call

CANARY = "sk-secret-canary-5d1e"
API_KEY = "sk-test-secret-key"  # what the `cli` fixture puts in OPENAI_API_KEY


def test_no_host_environment_variable_is_visible_inside(thread_box, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN",
                 "DATABASE_URL", "SSH_AUTH_SOCK", "DEVAGENT_CANARY"):
        monkeypatch.setenv(name, f"{CANARY}-{name}")
    box = thread_box()
    result = box.exec(
        "env; echo ---; cat /proc/1/environ /proc/self/environ | tr '\\0' '\\n'; echo ---;"
        " grep -l canary /proc/[0-9]*/environ 2>/dev/null; echo ---; echo \"$OPENAI_API_KEY$SSH_AUTH_SOCK\"",
        timeout_s=30,
    )
    assert result.exit_code == 0, result.output
    assert "canary" not in result.output
    # Only what devagent and the image set is there.
    names = {line.split("=", 1)[0] for line in result.output.split("---")[0].splitlines() if "=" in line}
    allowed = {*CONTAINER_ENV, "PATH", "HOSTNAME", "PWD", "SHLVL", "_", "OLDPWD",
               "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_USER", "PIP_BREAK_SYSTEM_PACKAGES", "PYTHONDONTWRITEBYTECODE"}
    assert names <= allowed, names - allowed


def test_no_docker_socket_inside(thread_box, docker_client) -> None:
    box = thread_box()
    probe = box.exec("ls -la /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock", timeout_s=30)
    assert probe.exit_code != 0 and probe.output.count("No such file or directory") == 3, probe.output
    sockets = box.exec("grep -c -E 'docker|containerd' /proc/mounts; find / -xdev -type s 2>/dev/null; "
                       "echo DOCKER_HOST=${DOCKER_HOST:-unset}", timeout_s=60)
    lines = sockets.output.split()
    assert lines[0] == "0" and "DOCKER_HOST=unset" in lines
    assert not any("docker" in line or "containerd" in line for line in lines[1:])
    # The only host paths mounted are the thread's checkout and its (read-only) repository.
    mounts = docker_client.api.inspect_container(box.spec.name)["Mounts"]
    assert sorted((m["Source"], m["Destination"], m["RW"]) for m in mounts) == sorted([
        (str(box.spec.workspace_dir), "/workspace", True),
        (str(box.spec.git_dir), "/workspace/.git", False),
    ])


def test_no_host_credential_file_is_visible_inside(thread_box, repo: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake_home = tmp_path / "user-home"
    files = {
        ".docker/config.json": '{"auths": {"registry.example": {"auth": "%s"}}}' % CANARY,
        ".ssh/id_ed25519": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY}\n",
        ".ssh/config": f"Host *\n  IdentityFile ~/.ssh/{CANARY}\n",
        ".gitconfig": f"[user]\n\tname = {CANARY}\n[credential]\n\thelper = store\n",
        ".git-credentials": f"https://user:{CANARY}@github.com\n",
        ".netrc": f"machine github.com login user password {CANARY}\n",
        ".aws/credentials": f"[default]\naws_secret_access_key = {CANARY}\n",
        ".config/gh/hosts.yml": f"github.com:\n  oauth_token: {CANARY}\n",
        ".pgpass": f"*:*:*:*:{CANARY}\n",
    }
    for rel, content in files.items():
        (fake_home / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake_home / rel).write_text(content)
    monkeypatch.setenv("HOME", str(fake_home))
    # The user's repository config may hold credentials too (a token in a remote URL, a header).
    git(repo, "remote", "add", "origin", f"https://user:{CANARY}@github.com/org/project.git")
    git(repo, "config", "http.extraHeader", f"Authorization: Bearer {CANARY}")

    box = thread_box()
    result = box.exec(
        "ls -A ~; echo ---; git config --list --show-origin; git remote -v; echo ---;"
        " grep -rIl --exclude-dir=proc --exclude-dir=sys -e canary / 2>/dev/null; echo ---end",
        timeout_s=120,
    )
    assert result.output.rstrip().endswith("---end"), result.output[-2000:]
    assert "canary" not in result.output, result.output[-2000:]
    home_listing = result.output.split("---")[0].split()
    assert not {".ssh", ".docker", ".gitconfig", ".netrc", ".aws", ".git-credentials", ".pgpass"} & set(home_listing)


def test_the_api_key_never_reaches_the_log_the_state_or_json_output(cli, llm, home: Path, repo: Path) -> None:
    """The model tries to read the key through the sandbox; the key is nowhere it could be logged."""
    llm.script(
        {"tool_calls": [tool_call("write_file", {"path": "notes.txt", "content": "hello\n"}, "w1"),
                        tool_call("run_shell", {"command": "echo key=[$OPENAI_API_KEY]; env; cat /proc/1/environ; "
                                                           "grep -rl sk-test / --exclude-dir=proc --exclude-dir=sys "
                                                           "2>/dev/null; echo done"}, "s1")]},
        {"content": "The key is not available here."},
    )
    runs = []
    paused = cli("task", "read the key", "--base-url", llm.url, "--model", "stub", "--no-input", "--json")
    runs.append(paused)
    assert paused.returncode == 3, paused.stderr
    thread_id = json.loads(paused.stdout.splitlines()[-1])["thread"]
    runs.append(cli("pending", thread_id, "--json"))
    runs.append(cli("approve", thread_id, "--all"))
    resumed = cli("resume", thread_id, "--json")
    runs.append(resumed)
    assert resumed.returncode == 0, resumed.stderr
    log = cli("log", thread_id, "--json")
    runs.append(log)
    runs.append(cli("log", thread_id))
    runs.append(cli("threads", "--json"))
    runs.append(cli("diff", thread_id))
    assert all(r.returncode == 0 for r in runs[1:]), [r.stderr for r in runs]

    for r in runs:
        assert API_KEY not in r.stdout and API_KEY not in r.stderr
    # The command really ran, and what the model got back holds no key.
    entries = json.loads(log.stdout)
    assert any(e["event"] == "executed" and e["call_id"] == "s1" for e in entries)
    output = llm.tool_outputs()["s1"]
    assert "key=[]" in output and "done" in output and API_KEY not in output
    assert API_KEY not in json.dumps(llm.requests)
    # Nothing on disk holds it: the store, the saved conversation, the checkout.
    for path in home.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path
