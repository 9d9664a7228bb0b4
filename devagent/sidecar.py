"""The PostgreSQL sidecar of a thread (`devagent task --database postgres`): its container,
internal network and data volume, all labelled with the thread so `discard` removes them.

The network is internal (no gateway out, no NAT) and its bridge has no address on the host
(`inhibit_ipv4`): the sandbox and the sidecar reach each other across it, and nothing else, not
even services of the host that listen on all of its addresses. The database role the thread
uses owns its database but is not a superuser unless the thread was started with
`--database postgres+superuser`.
"""

from __future__ import annotations

import time
from typing import Any

from devagent.config import POSTGRES_IMAGE, THREAD_LABEL, SandboxLimits
from devagent.errors import DevagentError, ImageMissing
from devagent.sandbox import ThreadContainer

PG_HOST, PG_PORT, PG_USER, PG_DB = "postgres", 5432, "devagent", "devagent"
PG_DATA = "/var/lib/postgresql/data"
PG_BIN = "/usr/local/lib/postgresql-bin"
PG_READY_TIMEOUT_S = 90
SIDECAR_MEMORY = "1g"
# The bridge of the thread's network gets no IPv4 address on the host, so the host is not a
# member of it. Docker still hands the containers a default route to the (unassigned) gateway
# address, which leads nowhere. The network has no IPv6 either.
NETWORK_OPTIONS = {"com.docker.network.bridge.inhibit_ipv4": "true"}


class PostgresSidecar:
    """The thread's PostgreSQL server: container, internal network and data volume (all labelled)."""

    def __init__(self, client: Any, thread_id: str, password: str, *, superuser: bool = False) -> None:
        self.client, self.api = client, client.api
        self.thread_id = thread_id
        self.password = password
        self.superuser = superuser
        self.name = f"devagent-{thread_id}-postgres"
        self.network = f"devagent-{thread_id}-net"
        self.volume = f"devagent-{thread_id}-pgdata"
        self.labels = {THREAD_LABEL: thread_id}

    def check_image(self) -> None:
        from devagent.sandbox import image_exists

        if not image_exists(self.client, POSTGRES_IMAGE):
            raise ImageMissing(f"the PostgreSQL image {POSTGRES_IMAGE} is missing; build it with "
                               "`devagent sandbox build`")

    def ensure_network(self) -> None:
        import docker

        try:
            self.client.networks.get(self.network)
        except docker.errors.NotFound:
            # internal: containers on it reach each other, nothing outside (no NAT, no forwarding);
            # NETWORK_OPTIONS: and the host has no address on it.
            self.client.networks.create(self.network, driver="bridge", internal=True, labels=self.labels,
                                        options=NETWORK_OPTIONS, enable_ipv6=False)

    def start(self) -> None:
        import docker

        self.ensure_network()
        try:
            self.api.start(self.name)
        except docker.errors.NotFound:
            self._create()
            self.api.start(self.name)
        except docker.errors.APIError as exc:
            raise DevagentError(f"cannot start the thread's PostgreSQL container: {exc.explanation or exc}") from None

    def _create(self) -> None:
        import docker
        from docker.types import Mount

        self.check_image()
        try:
            self.client.volumes.get(self.volume)
        except docker.errors.NotFound:
            self.client.volumes.create(self.volume, labels=self.labels)
        limits = SandboxLimits()
        try:
            self.client.containers.create(
                POSTGRES_IMAGE,
                name=self.name,
                labels={**self.labels, "org.devagent.role": "postgres"},
                environment={"DEVAGENT_PG_PASSWORD": self.password,
                             "DEVAGENT_PG_SUPERUSER": "1" if self.superuser else "0"},
                hostname=PG_HOST,
                user="postgres",
                mounts=[Mount(PG_DATA, self.volume, type="volume")],
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=limits.pids,
                mem_limit=SIDECAR_MEMORY,
                memswap_limit=SIDECAR_MEMORY,
                nano_cpus=int(limits.cpus * 1e9),
                network=self.network,
                networking_config={self.network: self.api.create_endpoint_config(aliases=[PG_HOST])},
                stop_signal="SIGINT",
            )
        except docker.errors.APIError as exc:
            raise DevagentError(f"cannot create the thread's PostgreSQL container: {exc.explanation or exc}") from None

    def attach(self, container: str) -> None:
        """Make sure the sandbox container is on the thread's internal network."""
        networks = self.api.inspect_container(container)["NetworkSettings"]["Networks"] or {}
        if self.network not in networks:
            self.api.connect_container_to_network(container, self.network)

    def wait_ready(self, timeout_s: float = PG_READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.api.inspect_container(self.name)["State"]
            if not state.get("Running"):
                logs = self.api.logs(self.name, tail=5).decode("utf-8", "replace").strip().splitlines()
                raise DevagentError(f"the thread's PostgreSQL server stopped: {logs[-1] if logs else 'no output'}")
            exec_id = self.api.exec_create(self.name, [f"{PG_BIN}/pg_isready", "-q", "-h", "127.0.0.1"],
                                           user="postgres")["Id"]
            self.api.exec_start(exec_id)
            if self.api.exec_inspect(exec_id).get("ExitCode") == 0:
                return
            if time.monotonic() > deadline:
                raise DevagentError(f"the thread's PostgreSQL server did not become ready in {timeout_s:.0f}s")
            time.sleep(0.25)

    def stop(self) -> None:
        import docker

        try:
            self.api.stop(self.name, timeout=10)
        except docker.errors.NotFound:
            pass


class SidecarContainer(ThreadContainer):
    """The thread's sandbox container, with its PostgreSQL sidecar started and stopped alongside."""

    def __init__(self, client: Any, spec: Any, sidecar: PostgresSidecar) -> None:
        super().__init__(client, spec)
        self.sidecar = sidecar

    def ensure_running(self) -> None:
        self.sidecar.start()
        super().ensure_running()
        self.sidecar.attach(self.spec.name)
        self.sidecar.wait_ready()
        self._write_pgpass()

    def _write_pgpass(self) -> None:
        # libpq reads ~/.pgpass, so `psql -h postgres -U devagent devagent` needs no password typed.
        pw = self.sidecar.password.replace("\\", "\\\\").replace(":", "\\:")
        lines = "".join(f"{host}:{PG_PORT}:*:{PG_USER}:{pw}\n" for host in (PG_HOST, self.sidecar.name))
        # Absolute paths only: PATH starts with ~/.local/bin, where the sandbox user may have put
        # an `sh` or a `cat` of its own.
        self.exec("write ~/.pgpass", argv=["/bin/sh", "-c", 'umask 077 && exec /bin/cat > "$HOME/.pgpass"'],
                  stdin=lines.encode(), timeout_s=30)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.sidecar.stop()
