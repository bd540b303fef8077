#!/usr/bin/env bash
# Every benchmark of record, each printing its figures (ratios measured in the same run) and its peak memory. Needs a
# finished main job:
#
#   bash scripts/main_job.sh && bash benchmarks/run_all.sh
#
# benchmarks/table1.py (every recipe end to end, hours) is run on its own.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
RUN="${RUN:-runs/fashion-mnist-resnet18}"
PY="$REPO/.venv/bin/python"
echo "== $(date -u +%F) on $(uname -m), $(nproc) cores"
echo "== generation: batched DDIM vs one-at-a-time DDPM-1000, our networks and the authors' sizes"
"$PY" benchmarks/generation_speed.py --run "$RUN"
echo "== evaluation: cached frozen prefix vs naive full models"
"$PY" benchmarks/evaluation_speed.py
echo "== evaluate.py as a whole (start-up, figures, t-SNE) vs the naive way extrapolated to its vectors (goal >= 100x)"
"$PY" benchmarks/evaluation_speed.py --whole "$RUN"
"$PY" benchmarks/prefix_speed.py
echo "== evaluation at the FLOP floor: multiply-adds per vector, GFLOP/s vs this machine's matmul peak"
"$PY" benchmarks/flop_floor.py
echo "== base training: images per second vs the matmul peak (channels_last, bfloat16, larger steps)"
"$PY" benchmarks/base_training.py
echo "== training: steps per second of both stages"
"$PY" benchmarks/training_speed.py --param_dataset "$RUN/params"
echo "== scale-out: 1 vs 2 processes (digits-mlp)"
"$PY" benchmarks/scale_out.py
echo "== main job: wall time and peak memory per step ($RUN/resources.txt)"
if [ -f "$RUN/resources.txt" ]; then
    # /usr/bin/time's %M is in KiB; the issue's limit is 3 GB per step.
    awk -F'peak RSS ' '{ gb = $2 * 1024 / 1e9; printf "%s (%.2f GB%s)\n", $0, gb, gb < 3 ? "" : ", OVER the 3 GB limit" }' \
        "$RUN/resources.txt"
else
    echo "(run scripts/main_job.sh first)"
fi
