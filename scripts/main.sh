#!/usr/bin/env bash
# The main job: set up, then train -> export -> simulate -> validate a small MTC network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mtc-analog demo --out "${1:-runs/demo}" --force
