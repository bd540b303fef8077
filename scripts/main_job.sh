#!/usr/bin/env bash
# The main job, from a fresh machine: set up, then collect -> train -> generate + evaluate -> report.
#
#   bash scripts/main_job.sh                          # Fashion-MNIST, timm resnet18, last two BatchNorm layers
#   RECIPE=digits-mlp OUT=runs/digits bash scripts/main_job.sh
#
# Outputs under $OUT (default runs/<recipe>): params/ (parameter dataset), pipeline/ (PDiffPipeline),
# eval/ (metrics.json, report.md, figures), resources.txt (wall time and peak memory of each step).
# A finished step is not repeated when the script is run again (delete its folder to redo it).
# Training runs under bfloat16 autocast (accelerate's --mixed_precision bf16) where the CPU computes bfloat16 natively
# (oneDNN's check): about 2x faster steps, the same reconstruction and generated accuracy (benchmarks/README.md).
# MIXED_PRECISION=no trains in float32.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
RECIPE="${RECIPE:-fashion-mnist-resnet18}"
OUT="${OUT:-runs/$RECIPE}"
START=$(date +%s)
bash scripts/setup.sh
mkdir -p "$OUT"
PY="$REPO/.venv/bin/python"
BF16_CHECK='import torch
try:
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
except (AttributeError, RuntimeError):  # a torch without the check: stay in float32
    native = False
print("bf16" if native else "no")'
MIXED_PRECISION="${MIXED_PRECISION:-$("$PY" -c "$BF16_CHECK")}"

# Wall time and peak resident memory of each step, when GNU time is available.
measure() {
    local step="$1"; shift
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -a -o "$OUT/resources.txt" -f "$step: %e s, peak RSS %M KB" "$@"
    else
        "$@"
    fi
}

if [ ! -f "$OUT/params/dataset/state.json" ]; then
    measure collect "$PY" scripts/collect.py --recipe "$RECIPE" --output_dir "$OUT/params" --overwrite
fi
if [ ! -f "$OUT/pipeline/model_index.json" ]; then
    measure train "$REPO/.venv/bin/accelerate" launch --cpu --num_processes 1 --num_machines 1 \
        --mixed_precision "$MIXED_PRECISION" --dynamo_backend no scripts/train.py --recipe "$RECIPE" --param_dataset "$OUT/params" \
        --output_dir "$OUT/pipeline" --resume_from_checkpoint latest
fi
measure evaluate "$PY" scripts/evaluate.py --recipe "$RECIPE" --pipeline "$OUT/pipeline" \
    --param_dataset "$OUT/params" --output_dir "$OUT/eval" --overwrite
echo "main job finished in $(( $(date +%s) - START )) s; report: $OUT/eval/report.md"
[ -f "$OUT/resources.txt" ] && cat "$OUT/resources.txt"
