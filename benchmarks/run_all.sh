#!/usr/bin/env bash
# Every benchmark of record, each printing its figures (ratios measured in the same run). Needs a finished main job:
#
#   bash scripts/main_job.sh && bash benchmarks/run_all.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
RUN="${RUN:-runs/fashion-mnist-resnet18}"
PY="$REPO/.venv/bin/python"
echo "== $(date -u +%F) on $(uname -m), $(nproc) cores"
echo "== generation: batched DDIM-50 vs one-at-a-time DDPM-1000"
"$PY" benchmarks/generation_speed.py --run "$RUN"
echo "== evaluation: cached frozen prefix vs naive full models"
"$PY" benchmarks/evaluation_speed.py
echo "== training: steps per second of both stages"
"$PY" benchmarks/training_speed.py --param_dataset "$RUN/params"
echo "== scale-out: 1 vs 2 processes (digits-mlp)"
"$PY" benchmarks/scale_out.py
echo "== main job: wall time and peak memory per step ($RUN/resources.txt)"
cat "$RUN/resources.txt" 2>/dev/null || echo "(run scripts/main_job.sh first)"
