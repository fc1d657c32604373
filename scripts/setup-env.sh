#!/usr/bin/env bash
# Create (once) the virtual environment .venv and install flint-analysis into it, editable.
# Usage: scripts/setup-env.sh [EXTRA]   e.g. scripts/setup-env.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec="."
[ $# -gt 0 ] && spec=".[$1]"
.venv/bin/python -m pip install --quiet --editable "$spec"
