"""Where devagent keeps its state, and the sandbox defaults. Read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The tags can be overridden, e.g. to try a changed Dockerfile beside the images in use.
SANDBOX_IMAGE = os.environ.get("DEVAGENT_SANDBOX_IMAGE", "devagent/sandbox:latest")
BASE_IMAGE = "devagent/base:bookworm"
POSTGRES_IMAGE = os.environ.get("DEVAGENT_POSTGRES_IMAGE", "devagent/postgres:latest")
THREAD_LABEL = "org.devagent.thread"


def devagent_home() -> Path:
    """`DEVAGENT_HOME`, else the XDG state dir (~/.local/state/devagent)."""
    explicit = os.environ.get("DEVAGENT_HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return (Path(xdg) / "devagent").resolve()


def project_root() -> Path:
    """The source tree holding Dockerfile.sandbox and sandbox/ (the package's parent)."""
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SandboxLimits:
    memory: str = os.environ.get("DEVAGENT_SANDBOX_MEMORY", "2g")
    pids: int = int(os.environ.get("DEVAGENT_SANDBOX_PIDS", "256"))
    cpus: float = float(os.environ.get("DEVAGENT_SANDBOX_CPUS", "1.5"))
    default_timeout_s: int = 300
    max_timeout_s: int = 3600
    # What reaches the model: the head and tail of the output, with the total size reported.
    output_head: int = 16 * 1024
    output_tail: int = 16 * 1024


def sandbox_user() -> tuple[int, int]:
    """The uid:gid the container runs as: the host user's, so checkout files stay theirs.

    Root on the host is never mapped to root in the container: it gets an unprivileged uid
    (DEVAGENT_SANDBOX_UID, default 1000) and the checkout is handed to that uid.
    """
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        fallback = int(os.environ.get("DEVAGENT_SANDBOX_UID", "1000"))
        return fallback, fallback
    return uid, gid


def sandbox_runtime() -> str | None:
    """The OCI runtime for thread containers (DEVAGENT_SANDBOX_RUNTIME, e.g. runsc); engine default if unset."""
    return os.environ.get("DEVAGENT_SANDBOX_RUNTIME") or None
