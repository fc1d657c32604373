#!/usr/bin/env bash
# The main job end to end on the embedded default (mnist5k): set up .venv, train the demo checkpoint,
# then interpret it. Outputs land in runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
bin=.venv/bin
$bin/flint-train --dataset mnist5k --preset demo --seed 0 -o runs/demo/ckpt.pt --overwrite
$bin/flint-analyze info runs/demo/ckpt.pt
$bin/flint-analyze global runs/demo/ckpt.pt -o runs/demo/global --force
$bin/flint-analyze local runs/demo/ckpt.pt --index 0 -o runs/demo/local --force --global-dir runs/demo/global
$bin/flint-analyze metrics runs/demo/ckpt.pt -o runs/demo/metrics --force
$bin/flint-analyze disagreement runs/demo/ckpt.pt -o runs/demo/disagreement --force --explain-worst 3 --global-dir runs/demo/global
