#!/bin/sh
# Set devagent up on a fresh machine: Docker engine (started if it is not running), the Python
# package in .venv, and the sandbox image built from Debian packages (no registry needed).
#   usage: sh scripts/install.sh [--dev]      (--dev adds the test dependencies)
set -eu
cd "$(dirname "$0")/.."
EXTRAS=""
[ "${1:-}" = "--dev" ] && EXTRAS="[dev]"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        echo "need root for: $*" >&2; exit 1; fi
}

apt_install() {
    echo "==> installing Debian packages: $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. Docker engine: use the running one, else install Debian's docker.io and start dockerd.
if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null 2>&1 || apt_install docker.io
    echo "==> starting dockerd (log: /tmp/dockerd.log)"
    as_root sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'
    tries=0
    until docker info >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" = 30 ]; then
            # Nested or unusual kernels: fall back to the driver that always works.
            echo "==> dockerd did not come up; retrying with --storage-driver=vfs"
            as_root pkill dockerd || true
            sleep 2
            as_root sh -c 'nohup dockerd --storage-driver=vfs >/tmp/dockerd.log 2>&1 &'
        fi
        if [ "$tries" = 60 ]; then
            echo "dockerd failed to start; see /tmp/dockerd.log" >&2
            tail -5 /tmp/dockerd.log >&2 || true
            exit 1
        fi
        sleep 1
    done
fi
echo "==> Docker engine: $(docker version --format '{{.Server.Version}}')"

# 2. debootstrap builds the sandbox's base image from Debian packages.
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || apt_install debootstrap

# 3. The package, in a virtualenv of its own.
if ! python3 -m venv --help >/dev/null 2>&1; then apt_install python3-venv; fi
[ -x .venv/bin/python ] || python3 -m venv .venv || { apt_install python3-venv; python3 -m venv .venv; }
echo "==> installing devagent$EXTRAS into .venv"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".$EXTRAS"

# 4. The sandbox image (idempotent: reuses what is current).
PATH="/usr/sbin:/sbin:$PATH" .venv/bin/devagent sandbox build
echo "==> ready: .venv/bin/devagent (or: . .venv/bin/activate)"
