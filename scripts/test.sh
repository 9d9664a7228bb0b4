#!/bin/sh
# Install everything (engine, package with dev extras, sandbox image) and run the whole suite
# against the real Docker engine. Sandbox tests may not skip: DEVAGENT_REQUIRE_DOCKER=1.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh --dev
export DEVAGENT_REQUIRE_DOCKER=1
exec .venv/bin/python -m pytest -q "$@"
