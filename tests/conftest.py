from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llm_stub import StubLLM

try:
    from hypothesis import settings

    # In CI the property tests replay the same examples every run: a failure there is one that
    # a developer can reproduce, not a new random draw. Locally they keep exploring.
    settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        settings.load_profile("ci")
except ImportError:  # hypothesis is a dev extra
    pass

sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        if "docker_client" in getattr(item, "fixturenames", ()) or "sandbox_image" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_client() -> Any:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("DEVAGENT_REQUIRE_DOCKER") == "1":
            pytest.fail(f"Docker is required (DEVAGENT_REQUIRE_DOCKER=1) but unreachable: {exc}")
        pytest.skip(f"Docker engine unreachable: {exc}")
    return client


@pytest.fixture(scope="session")
def sandbox_image(docker_client: Any) -> str:
    from devagent.sandbox import build_images

    return build_images(docker_client)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("DEVAGENT_HOME", str(path))
    # The developer's own config and rules files never leak into a test.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("DEVAGENT_MODEL", raising=False)
    yield path
    _cleanup_threads(path)


def _cleanup_threads(home: Path) -> None:
    """Remove the containers of every thread a test created (they are labelled by thread id)."""
    if not (home / "devagent.db").exists():
        return
    from devagent.sandbox import remove_thread_resources
    from devagent.store import Store

    import docker

    store = Store(home)
    try:
        client = docker.from_env()
        for thread in store.threads():
            remove_thread_resources(client, thread.id)
    except docker.errors.DockerException:
        pass
    finally:
        store.close()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.com")
    (path / "README.md").write_text("# project\n")
    (path / "Makefile").write_text("test:\n\t@echo tests pass\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def thread_box(docker_client: Any, sandbox_image: str, home: Path, repo: Path) -> Any:
    """A workspace + container for a made-up thread id, removed afterwards."""
    made = []

    def make(thread_id: str | None = None, network: bool = False) -> Any:
        from devagent.config import sandbox_user
        from devagent.sandbox import ContainerSpec, ThreadContainer
        from devagent.workspace import ThreadWorkspace

        thread_id = thread_id or "sbx" + os.urandom(3).hex()
        ws = ThreadWorkspace(thread_id, home / "threads" / thread_id)
        ws.create(repo, owner=sandbox_user())
        box = ThreadContainer(docker_client, ContainerSpec(thread_id, ws.work_dir, ws.git_dir, network=network))
        made.append(box)
        box.ensure_running()
        return box

    yield make
    for box in made:
        box.remove()


@pytest.fixture
def llm() -> StubLLM:
    stub = StubLLM()
    yield stub
    stub.close()


@pytest.fixture
def cli(home: Path, repo: Path) -> Any:
    """Run the real `devagent` CLI in a subprocess (no TTY on stdin), in the test repo."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test-secret-key", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "devagent", *args], cwd=repo, env=full_env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout,
        )

    def measured(*args: str, env: dict[str, str] | None = None,
                 timeout: float = 180) -> tuple[subprocess.CompletedProcess[str], Any]:
        """`run`, and the resource usage of that one process (the peak memory of every child the
        test process ever had is what RUSAGE_CHILDREN holds: not this one's)."""
        import tempfile
        import threading

        full_env = {**os.environ, "DEVAGENT_HOME": str(home), "OPENAI_API_KEY": "sk-test-secret-key", **(env or {})}
        argv = [sys.executable, "-m", "devagent", *args]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, cwd=repo, env=full_env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            killer = threading.Timer(timeout, proc.kill)
            killer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                killer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(argv, proc.returncode, out.read().decode(), err.read().decode()), usage

    run.measured = measured  # type: ignore[attr-defined]
    return run
