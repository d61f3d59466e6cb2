#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite: unit tests and integration tests
# that start the real broker and object store on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
