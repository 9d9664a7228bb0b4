#!/bin/sh
# Build the sandbox's base image from Debian packages alone (no container registry needed):
# debootstrap a minimal bookworm into a folder, then `docker import` it under the tag that
# Dockerfile.sandbox names in FROM.
#   usage: build-base.sh TAG [MIRROR]
set -eu
TAG=${1:?usage: build-base.sh TAG [MIRROR]}
MIRROR=${2:-http://deb.debian.org/debian}
SUITE=bookworm
PACKAGES=bash,coreutils,procps,findutils,grep,sed,less,git,python3,python3-venv,python3-pip,python3-wheel-whl,sqlite3,postgresql-client,make,ca-certificates,curl,patch,diffutils,file

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "debootstrap is not installed (Debian/Ubuntu: apt-get install debootstrap)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "building the base image needs root (debootstrap creates device nodes and chowns files); run it with sudo" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/devagent-base.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
ROOT="$WORK/rootfs"

echo "step 1/3: debootstrap $SUITE (minbase + agent tools) from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR"

echo "step 2/3: trimming apt caches and docs"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
# apt inside the image still knows where packages come from (used when building images on top)
echo "deb $MIRROR $SUITE main" > "$ROOT/etc/apt/sources.list"

echo "step 3/3: docker import as $TAG"
tar -C "$ROOT" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$TAG"
echo "built $TAG"
