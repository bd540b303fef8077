#!/usr/bin/env bash
# The main job, from a fresh machine: set up, then collect -> train -> generate + evaluate -> report.
#
#   bash scripts/main_job.sh                          # Fashion-MNIST, timm resnet18, last two BatchNorm layers
#   RECIPE=digits-mlp OUT=runs/digits bash scripts/main_job.sh
#
# Outputs under $OUT (default runs/<recipe>): params/ (parameter dataset), pipeline/ (PDiffPipeline),
# eval/ (metrics.json, report.md, figures). A finished step is not repeated when the script is run again.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
RECIPE="${RECIPE:-fashion-mnist-resnet18}"
OUT="${OUT:-runs/$RECIPE}"
START=$(date +%s)
bash scripts/setup.sh
PY="$REPO/.venv/bin/python"

if [ ! -f "$OUT/params/dataset/state.json" ]; then
    "$PY" scripts/collect.py --recipe "$RECIPE" --output_dir "$OUT/params"
fi
if [ ! -f "$OUT/pipeline/model_index.json" ]; then
    "$REPO/.venv/bin/accelerate" launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no \
        --dynamo_backend no scripts/train.py --recipe "$RECIPE" --param_dataset "$OUT/params" \
        --output_dir "$OUT/pipeline" --resume_from_checkpoint latest
fi
"$PY" scripts/evaluate.py --recipe "$RECIPE" --pipeline "$OUT/pipeline" --param_dataset "$OUT/params" \
    --output_dir "$OUT/eval" --overwrite
echo "main job finished in $(( $(date +%s) - START )) s; report: $OUT/eval/report.md"
