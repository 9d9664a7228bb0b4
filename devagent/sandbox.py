"""Docker: the sandbox image, one hardened container per thread, and exec with limits.

Every container belongs to one thread (label `org.devagent.thread`) and is kept stopped between
turns so what the agent installed is still there next turn. Commands run as an unprivileged uid
with no capabilities. They are started by `devagent-run`, devagent's root-owned wrapper in the
image, which runs as root in the container (capabilities KILL, SETUID, SETGID only; PID 1 gives up
even those): the command cannot signal or trace it, it enforces the timeout inside the container
(so it holds even if devagent dies), and it stops every process the command leaves running.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devagent.config import (
    BASE_IMAGE,
    POSTGRES_IMAGE,
    SANDBOX_IMAGE,
    THREAD_LABEL,
    SandboxLimits,
    project_root,
    sandbox_runtime,
    sandbox_user,
)
from devagent.errors import DevagentError, DockerUnavailable, ImageMissing

CONTEXT_LABEL = "org.devagent.context-sha256"
WORKDIR = "/workspace"
# devagent's wrapper in the image (sandbox/run.sh), run by absolute path as root.
RUN_HELPER = "/usr/local/lib/devagent/devagent-run"
ROOT = "0:0"
# The container's root gets back only what devagent-run needs: KILL to stop the sandbox user's
# processes, SETUID/SETGID to start the command as that user. The sandbox user has none of them.
ROOT_CAPABILITIES = ["KILL", "SETGID", "SETUID"]
# The host's own deadline comes this long after the one devagent-run enforces inside.
HOST_TIMEOUT_GRACE_S = 10.0
# How often `exec(on_tick=...)` calls back while a command runs.
TICK_S = 1.0
# Only these reach the container: never the host environment (API keys live there).
CONTAINER_ENV = {"HOME": "/home/agent", "LANG": "C.UTF-8", "TERM": "dumb", "PAGER": "cat"}
# The system CAs of the image plus the user's extra ones (`sandbox.ca_certificates`), root-owned.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_BUNDLE = "/etc/ssl/devagent-ca-bundle.crt"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def connect() -> Any:
    """A docker-py client, or a one-line DockerUnavailable saying what to do."""
    import docker  # deferred: the CLI's fast paths must not pay for importing docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(
            f"cannot reach the Docker engine ({_docker_reason(exc)}); "
            "run `devagent sandbox doctor` to see what is wrong"
        ) from None


def _docker_reason(exc: Exception) -> str:
    text = str(exc)
    if "Permission denied" in text:
        return "permission denied on the Docker socket"
    if "No such file" in text or "FileNotFoundError" in text or "Connection refused" in text:
        return "no Docker daemon is listening"
    return text.splitlines()[0][:200] if text else type(exc).__name__


# --------------------------------------------------------------------------- output capping


class OutputCap:
    """Keeps the first `head` and last `tail` bytes of a stream and counts the rest.

    Memory stays flat however much a command prints.
    """

    def __init__(self, head: int, tail: int) -> None:
        self.head_limit, self.tail_limit = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.tail_limit:
                del self.tail[: len(self.tail) - self.tail_limit]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        if not self.truncated:
            return head + self.tail.decode("utf-8", errors="replace")
        omitted = self.total - len(self.head) - len(self.tail)
        tail = self.tail.decode("utf-8", errors="replace")
        kept_tail_from = self.total - len(self.tail)
        return (
            f"{head}\n[... output cut: bytes {len(self.head)}-{kept_tail_from} omitted ({omitted} bytes); kept the "
            f"first {len(self.head)} and the last {len(self.tail)}; the command printed {self.total} bytes in all ...]\n"
            f"{tail}"
        )


@dataclass
class ExecResult:
    command: str
    exit_code: int | None
    output: str
    total_bytes: int
    truncated: bool
    timed_out: bool
    duration_s: float

    def for_model(self) -> str:
        """What the agent reads back: status line first, then the (capped) output."""
        if self.timed_out:
            status = f"timed out after {self.duration_s:.0f}s; every process of the command was killed"
        else:
            status = f"exit code {self.exit_code}"
        return f"[{status}; {self.duration_s:.2f}s; {self.total_bytes} bytes of output]\n{self.output}"


# --------------------------------------------------------------------------- image


def _context_files(root: Path, dockerfile: str = "Dockerfile.sandbox") -> list[Path]:
    # sandbox/postgres-* belong to the database sidecar's image (Dockerfile.postgres) only.
    files = sorted((root / "sandbox").glob("*"))
    if dockerfile == "Dockerfile.postgres":
        return [root / dockerfile, *[f for f in files if f.name.startswith("postgres")]]
    return [root / dockerfile, *[f for f in files if not f.name.startswith("postgres")]]


def context_digest(root: Path | None = None, dockerfile: str = "Dockerfile.sandbox") -> str:
    root = root or project_root()
    h = hashlib.sha256()
    for path in _context_files(root, dockerfile):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _context_tar(root: Path, dockerfile: str = "Dockerfile.sandbox") -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in _context_files(root, dockerfile):
            tar.add(path, arcname=path.relative_to(root).as_posix())
    buf.seek(0)
    return buf


def docker_errors() -> Any:
    import docker

    return docker.errors


def image_exists(client: Any, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_images(client: Any, progress: Progress = _quiet, *, force: bool = False) -> str:
    """Build the base image (debootstrap), the sandbox image and the PostgreSQL sidecar image,
    reusing what is current."""
    root = project_root()
    if not (root / "Dockerfile.sandbox").is_file():
        raise DevagentError(
            f"Dockerfile.sandbox not found next to the package ({root}); "
            "install devagent from its source checkout (pip install -e .)"
        )
    if force or not image_exists(client, BASE_IMAGE):
        progress(f"building base image {BASE_IMAGE} from Debian packages (debootstrap, ~1 min)")
        argv = ["sh", str(root / "sandbox" / "build-base.sh"), BASE_IMAGE]
        if os.getuid() != 0 and shutil.which("sudo"):
            progress("debootstrap needs root: running the base build through sudo")
            argv = ["sudo", *argv]
        _run_streaming(argv, progress)
    else:
        progress(f"base image {BASE_IMAGE} present, reused")

    _build_image(client, root, "Dockerfile.sandbox", SANDBOX_IMAGE, "sandbox image", progress, force)
    # The PostgreSQL sidecar of `devagent task --database postgres` (Debian's packages, same base).
    _build_image(client, root, "Dockerfile.postgres", POSTGRES_IMAGE, "postgres image", progress, force)
    return SANDBOX_IMAGE


def _build_image(client: Any, root: Path, dockerfile: str, tag: str, what: str, progress: Progress,
                 force: bool) -> None:
    """Build `tag` from `dockerfile` unless an image of the same context digest exists."""
    digest = context_digest(root, dockerfile)
    previous = client.images.get(tag) if image_exists(client, tag) else None
    if not force and previous is not None and previous.labels.get(CONTEXT_LABEL) == digest:
        progress(f"{what} {tag} is up to date")
        return
    progress(f"building {tag} from {dockerfile}")
    stream = client.api.build(
        fileobj=_context_tar(root, dockerfile),
        custom_context=True,
        dockerfile=dockerfile,
        tag=tag,
        labels={CONTEXT_LABEL: digest},
        rm=True,
        pull=False,
        decode=True,
    )
    for event in stream:
        if "error" in event:
            raise DevagentError(f"{what} build failed: {event['error'].strip()}")
        line = (event.get("stream") or "").strip()
        if line:
            progress(line)
    progress(f"built {tag}")
    if previous is not None and previous.id != client.images.get(tag).id:
        # The replaced image is dead weight unless a thread's container still uses it.
        try:
            client.images.remove(previous.id)
        except docker_errors().APIError:
            pass


def _run_streaming(argv: list[str], progress: Progress) -> None:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-5:]
        progress(line)
    if proc.wait() != 0:
        raise DevagentError(f"building the base image failed: {tail[-1] if tail else 'no output'}")


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class ContainerSpec:
    thread_id: str
    workspace_dir: Path
    git_dir: Path
    network: bool = False
    # A per-thread internal network (database sidecar) used when the thread has no outside network.
    internal_network: str | None = None
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    # From the config (`sandbox.env`, `sandbox.ca_certificates`, `sandbox.proxy`): variables passed
    # in by name, extra CA certificates (host files) trusted inside, a proxy for --network threads.
    env: tuple[tuple[str, str], ...] = ()
    ca_certificates: tuple[str, ...] = ()
    proxy: str | None = None

    @property
    def name(self) -> str:
        return f"devagent-{self.thread_id}"

    def environment(self) -> dict[str, str]:
        """What every process in the container sees: devagent's few variables, never the host's."""
        env = {**dict(self.env), **CONTAINER_ENV}
        if self.ca_certificates:
            # Every common TLS stack reads one of these; each points at the system CAs + the extra ones.
            env.update({name: CA_BUNDLE for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT",
                                                     "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO")})
        if self.proxy and self.network:
            env.update({"HTTP_PROXY": self.proxy, "HTTPS_PROXY": self.proxy, "http_proxy": self.proxy,
                        "https_proxy": self.proxy, "NO_PROXY": "localhost,127.0.0.1", "no_proxy": "localhost,127.0.0.1"})
        return env


class ThreadContainer:
    """The container of one thread. Created on first use, started per turn, stopped after."""

    def __init__(self, client: Any, spec: ContainerSpec) -> None:
        self.client, self.spec = client, spec
        self.api = client.api
        self.uid, self.gid = sandbox_user()
        # One command at a time: each command's clean-up kills every process it finds, so two
        # calls of one model turn (run in parallel by the SDK) must not overlap.
        self._exec_lock = threading.Lock()

    # -- lifecycle

    def ensure_running(self) -> None:
        """Start the thread's container, creating it on first use. One API call when it exists."""
        import docker

        with self._exec_lock:
            try:
                self.api.start(self.spec.name)
            except docker.errors.NotFound:
                self._create()
                self.api.start(self.spec.name)
            except docker.errors.APIError as exc:
                raise DevagentError(f"cannot start the sandbox container: {exc.explanation or exc}") from None

    def _create(self) -> None:
        import docker
        from docker.types import Mount

        if not image_exists(self.client, SANDBOX_IMAGE):
            raise ImageMissing(
                f"the sandbox image {SANDBOX_IMAGE} is missing; build it with `devagent sandbox build`"
            )
        s, lim = self.spec, self.spec.limits
        network_mode = "bridge" if s.network else (s.internal_network or "none")
        try:
            self.client.containers.create(
                SANDBOX_IMAGE,
                name=s.name,
                labels={THREAD_LABEL: s.thread_id},
                # PID 1 runs as root (capabilities given up at start): another uid than the
                # sandbox user's, so commands can neither trace, write nor signal it.
                user=ROOT,
                working_dir=WORKDIR,
                environment=s.environment(),
                hostname="devagent",
                mounts=[
                    Mount(WORKDIR, str(s.workspace_dir), type="bind"),
                    # The git metadata is read-only inside: git log/diff/status work, but nothing
                    # in the sandbox can plant hooks or config that host-side git would obey.
                    Mount(f"{WORKDIR}/.git", str(s.git_dir), type="bind", read_only=True),
                ],
                cap_drop=["ALL"],
                cap_add=ROOT_CAPABILITIES,
                security_opt=["no-new-privileges"],
                pids_limit=lim.pids,
                mem_limit=lim.memory,
                memswap_limit=lim.memory,
                nano_cpus=int(lim.cpus * 1e9),
                network_mode=network_mode,
                # e.g. runsc (gVisor) where installed: a user-space kernel between agent and host.
                runtime=sandbox_runtime(),
                stdin_open=False,
                tty=False,
            )
        except docker.errors.APIError as exc:
            raise DevagentError(f"cannot create the sandbox container: {exc.explanation or exc}") from None
        self.ensure_user_entry()
        if s.ca_certificates:
            self._install_ca_bundle()

    def ensure_user_entry(self) -> None:
        """Give the sandbox uid a name (/etc/passwd, /etc/group), as on any Debian box: `whoami`,
        `id`, ssh, bash's prompt and pip expect one ("I have no name!" otherwise). Written as root
        through the engine; the files stay root-owned, so the sandbox user cannot change them."""
        entries = {"/etc/passwd": (self.uid, f"agent:x:{self.uid}:{self.gid}:devagent sandbox user:/home/agent:/bin/bash\n"),
                   "/etc/group": (self.gid, f"agent:x:{self.gid}:\n")}
        for path, (number, line) in entries.items():
            stream, _ = self.api.get_archive(self.spec.name, path)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.next()
                text = tar.extractfile(member).read() if member is not None and member.isfile() else b""
            taken = {row.split(b":")[2] for row in text.splitlines() if row.count(b":") >= 3}
            names = {row.split(b":")[0] for row in text.splitlines()}
            if str(number).encode() in taken:
                continue  # the image already names this uid (or gid)
            if b"agent" in names:
                line = line.replace("agent:", "devagent-user:", 1)
            data = text.rstrip(b"\n") + b"\n" + line.encode()
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                info = tarfile.TarInfo(Path(path).name)
                info.size, info.mode, info.uid, info.gid = len(data), 0o644, 0, 0
                tar.addfile(info, io.BytesIO(data))
            self.api.put_archive(self.spec.name, "/etc", buf.getvalue())

    def _install_ca_bundle(self) -> None:
        """Write the image's CAs + the user's extra certificates into the new container (as root,
        through the engine: the sandbox user cannot change it)."""
        extra = []
        for path in self.spec.ca_certificates:
            try:
                data = Path(path).expanduser().read_bytes()
            except OSError as exc:
                self.remove()
                raise DevagentError(f"sandbox.ca_certificates: cannot read {path}: {exc.strerror or exc}") from None
            if b"-----BEGIN CERTIFICATE-----" not in data:
                self.remove()
                raise DevagentError(f"sandbox.ca_certificates: {path} holds no PEM certificate")
            extra.append(data.rstrip(b"\n") + b"\n")
        stream, _ = self.api.get_archive(self.spec.name, SYSTEM_CA_BUNDLE)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            system = tar.extractfile(member).read() if member is not None and member.isfile() else b""
        bundle = system.rstrip(b"\n") + b"\n" + b"".join(extra)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(Path(CA_BUNDLE).name)
            info.size, info.mode, info.uid, info.gid = len(bundle), 0o644, 0, 0
            tar.addfile(info, io.BytesIO(bundle))
        self.api.put_archive(self.spec.name, str(Path(CA_BUNDLE).parent), buf.getvalue())

    def stop(self) -> None:
        import docker

        try:
            self.api.stop(self.spec.name, timeout=3)
        except docker.errors.NotFound:
            pass

    def remove(self) -> None:
        import docker

        try:
            self.api.remove_container(self.spec.name, force=True, v=True)
        except docker.errors.NotFound:
            pass

    def exists(self) -> bool:
        import docker

        try:
            self.api.inspect_container(self.spec.name)
            return True
        except docker.errors.NotFound:
            return False

    # -- exec

    def exec(
        self,
        command: str,
        *,
        timeout_s: float | None = None,
        on_output: Callable[[str], None] | None = None,
        workdir: str = WORKDIR,
        stdin: bytes | None = None,
        argv: list[str] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> ExecResult:
        """Run `command` (exactly this string, via bash -c) and return its capped result.

        `argv` runs a program directly instead (devagent's own helpers in the image): a bare
        program name is looked up in the system directories only, never in the sandbox user's.
        `on_output` receives decoded text as it arrives; `on_tick` is called about every
        TICK_S while the command runs (from another thread: the caller's heartbeat).
        """
        with self._exec_lock:
            return self._exec(command, timeout_s=timeout_s, on_output=on_output, workdir=workdir,
                              stdin=stdin, argv=argv, on_tick=on_tick)

    def _exec(self, command: str, *, timeout_s: float | None, on_output: Callable[[str], None] | None,
              workdir: str, stdin: bytes | None, argv: list[str] | None,
              on_tick: Callable[[], None] | None = None) -> ExecResult:
        lim = self.spec.limits
        timeout = min(float(timeout_s or lim.default_timeout_s), float(lim.max_timeout_s))
        if argv is not None:
            cmd = [RUN_HELPER, "argv", str(self.uid), str(self.gid), f"{timeout:.3f}", *argv]
        else:
            cmd = [RUN_HELPER, "shell", str(self.uid), str(self.gid), f"{timeout:.3f}", command]
        exec_id = self.api.exec_create(
            self.spec.name,
            cmd,
            stdout=True,
            stderr=True,
            stdin=stdin is not None,
            user=ROOT,
            workdir=workdir,
            environment=self.spec.environment(),
        )["Id"]
        cap = OutputCap(lim.output_head, lim.output_tail)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        timed_out = threading.Event()
        # devagent-run kills the command at `timeout` inside the container; here the result is
        # marked timed out then, and should the command still not have ended a little later
        # (a broken container), every process in it is stopped from here too.
        # One watchdog thread for both deadlines and the caller's ticks (a thread start is a
        # visible part of a short exec).
        ended = threading.Event()

        def ended_by(deadline: float) -> bool:
            """Whether the command ended before `deadline` (monotonic), ticking meanwhile."""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return ended.is_set()
                if ended.wait(min(left, TICK_S) if on_tick is not None else left):
                    return True
                if on_tick is not None:
                    try:
                        on_tick()
                    except Exception:  # noqa: BLE001 - a failing callback must not end the deadlines
                        pass

        def watchdog() -> None:
            if ended_by(time.monotonic() + timeout):
                return
            timed_out.set()
            if not ended_by(time.monotonic() + HOST_TIMEOUT_GRACE_S):
                self._kill_all(timed_out)

        started = time.monotonic()
        threading.Thread(target=watchdog, name="devagent-exec-timeout", daemon=True).start()
        try:
            for chunk in self._stream(exec_id, stdin):
                cap.feed(chunk)
                if on_output is not None:
                    text = decoder.decode(chunk)
                    if text:
                        on_output(text)
        except BaseException:
            # Ctrl-C or a broken connection: the command must not outlive us.
            self._kill_all(timed_out, mark=False)
            raise
        finally:
            ended.set()
        duration = time.monotonic() - started
        exit_code = self.api.exec_inspect(exec_id).get("ExitCode")
        if exit_code == 126 and cap.total < 1024 and f"{RUN_HELPER}: no such file" in cap.text():
            raise DevagentError(
                f"the container {self.spec.name} was made by an older devagent (no {RUN_HELPER}); "
                f"remove it with `docker rm -f {self.spec.name}` and run again (the checkout is kept; "
                "what was installed in the container is not)"
            )
        return ExecResult(
            command=command,
            exit_code=None if timed_out.is_set() else exit_code,
            output=cap.text(),
            total_bytes=cap.total,
            truncated=cap.truncated,
            timed_out=timed_out.is_set(),
            duration_s=duration,
        )

    def _stream(self, exec_id: str, stdin: bytes | None) -> Iterator[bytes]:
        if stdin is None:
            yield from self.api.exec_start(exec_id, stream=True)
            return
        # Feed stdin through the attached socket, then read the multiplexed output frames.
        from docker.utils.socket import frames_iter

        sock = self.api.exec_start(exec_id, socket=True)
        raw = getattr(sock, "_sock", sock)
        raw.sendall(stdin)
        import socket as _socket

        raw.shutdown(_socket.SHUT_WR)
        for _stream_id, data in frames_iter(sock, tty=False):
            yield data
        sock.close()

    def kill_processes(self) -> None:
        """Kill every command running in the container (Ctrl-C); the container stays up."""
        self._kill_all(threading.Event(), mark=False)

    def _kill_all(self, flag: threading.Event, mark: bool = True) -> None:
        """Stop every process in the container but PID 1 (the container stays up)."""
        if mark:
            flag.set()
        try:
            kill_id = self.api.exec_create(self.spec.name, [RUN_HELPER, "stop"], user=ROOT)["Id"]
            self.api.exec_start(kill_id)
        except Exception:  # the container may already be gone; nothing left to kill then
            pass


def remove_thread_resources(client: Any, thread_id: str) -> None:
    """Remove every container, network and volume labelled with the thread (sandbox, sidecars)."""
    label = f"{THREAD_LABEL}={thread_id}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True, v=True)
    for network in client.networks.list(filters={"label": label}):
        network.remove()
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
