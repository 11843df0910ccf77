#!/usr/bin/env bash
# One GPU check for one H100/H200 (under 8 minutes): CUDA-marked tests, s/kimg of low-shot-256 and
# paper256 per precision setting with peak memory, and a 2-minute training run whose ticks must be
# sane; one JSON (default bench/results/gpu_check.json) beside NVlabs' published 256x256 figures.
#   bench/gpu_check.sh [--out FILE] [--skip-tests] [--train-seconds S] [--nvlabs PATH]  # PATH: your NVlabs checkout
#   bench/gpu_check.sh --cpu-smoke --out /tmp/gpu_check_smoke.json   # CPU-possible parts, CI-sized
# Uses the machine's own python3 and torch (override with PYTHON=...); needs torch and numpy only.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" bench/gpu_check.py "$@"
