"""`devagent sandbox doctor`: what is wrong with Docker, in plain words, and how to fix it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

from devagent.config import BASE_IMAGE, POSTGRES_IMAGE, SANDBOX_IMAGE


def diagnose() -> Iterator[tuple[bool, str]]:
    import docker

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    socket_path = host.removeprefix("unix://") if host.startswith("unix://") else None
    if socket_path and not os.path.exists(socket_path):
        yield False, (f"no Docker socket at {socket_path}: the daemon is not running. Start it "
                      "(systemctl start docker, or `dockerd &` as root; Debian: apt-get install docker.io)")
        return
    if socket_path and not os.access(socket_path, os.R_OK | os.W_OK):
        yield False, (f"no permission on {socket_path}: add yourself to the docker group "
                      "(sudo usermod -aG docker $USER, then log in again) or run as root")
        return
    try:
        client = docker.from_env(timeout=10)
        version = client.version()
    except docker.errors.DockerException as exc:
        yield False, f"cannot talk to the Docker engine at {host}: {str(exc).splitlines()[0][:200]}"
        return
    yield True, f"Docker engine {version.get('Version')} (API {version.get('ApiVersion')}) at {host}"
    for tag, what in ((BASE_IMAGE, "base image"), (SANDBOX_IMAGE, "sandbox image"),
                      (POSTGRES_IMAGE, "PostgreSQL image (--database postgres)")):
        try:
            client.images.get(tag)
            yield True, f"{what} {tag} present"
        except docker.errors.ImageNotFound:
            yield False, f"{what} {tag} missing: run `devagent sandbox build`"
    if shutil.which("debootstrap") is None:
        yield True, "note: debootstrap is not installed; needed only to (re)build the base image"
