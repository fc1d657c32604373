#!/usr/bin/env bash
# The whole test suite, from a clean clone: sets up .venv with the test extra, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh test
exec .venv/bin/python -m pytest "$@"
