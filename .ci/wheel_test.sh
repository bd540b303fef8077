#!/usr/bin/env bash
# The package as a user installs it: build the wheel, install it into a fresh virtual environment outside the
# repository, and run a tiny recipe BY NAME through collect -> train -> generate from a folder outside the checkout.
# Recipes and card templates must come from the installed package data, not from the source tree.
#
#   bash .ci/wheel_test.sh      # needs .venv (scripts/setup.sh) for the build tools; WORK=DIR keeps the files
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${WORK:-}" ]; then  # a temporary folder, removed after a pass (kept after a failure, to look at)
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/pdiff-wheel-test.XXXXXX")"
    trap 'if [ $? -eq 0 ]; then rm -rf "$WORK"; fi' EXIT
fi
case "$WORK/" in "$REPO"/*) echo "WORK must be outside the repository" >&2; exit 2 ;; esac
log() { printf '[wheel_test %(%H:%M:%S)T] %s\n' -1 "$*"; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TQDM_DISABLE=1 PIP_NO_INPUT=1 HF_HUB_OFFLINE=1 HF_HOME="$WORK/hf_home"

log "building the wheel into $WORK/dist"
"$REPO/.venv/bin/python" -m build --wheel --outdir "$WORK/dist" "$REPO" >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log"; exit 1; }
WHEEL=("$WORK"/dist/pdiff_hub-*.whl)
"$REPO/.venv/bin/python" - "${WHEEL[0]}" <<'PY'
import sys
import zipfile

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
recipes = sorted(n for n in names if n.startswith("pdiff_hub/recipes/") and n.endswith(".yaml"))
templates = sorted(n for n in names if n.startswith("pdiff_hub/hub/templates/") and n.endswith(".md"))
assert "pdiff_hub/recipes/digits-mlp.yaml" in recipes, f"the wheel lacks the recipes: {recipes}"
assert {"pipeline.md", "parameter_dataset.md", "generated_model.md"} <= {t.rsplit("/", 1)[1] for t in templates}, \
    f"the wheel lacks card templates: {templates}"
print(f"the wheel holds {len(recipes)} recipes and {len(templates)} card templates")
PY

log "a fresh virtual environment in $WORK/venv: torch as scripts/setup.sh installs it, then the wheel"
PY="$WORK/venv/bin/python"
# torch with its CUDA libraries is 5.5 GB on x86_64, and a second copy once filled a CI machine's disk: the files
# of torch, torchvision, triton and the nvidia/cuda wheels are hard links to those that scripts/setup.sh installed
# in .venv (same versions, no extra space; their small pure-Python requirements are still installed by pip below).
# Where hard links cannot be made (another file system), torch is installed again as scripts/setup.sh does.
"${PYTHON:-python3}" -m venv "$WORK/venv"
"$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
if ! "$REPO/.venv/bin/python" - "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" <<'PY'
import importlib.metadata
import os
import sys
from pathlib import Path

target = Path(sys.argv[1])
shared = 0
for dist in importlib.metadata.distributions():
    name = dist.metadata["Name"].lower()
    if name not in {"torch", "torchvision", "triton"} and not name.startswith(("nvidia-", "cuda-")):
        continue
    for file in dist.files or []:
        if str(file).startswith(".."):  # console scripts in bin/: their first line names .venv's Python
            continue
        source, link = Path(dist.locate_file(file)), target / file
        if source.is_file():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, link)
            shared += source.stat().st_size
print(f"torch and its CUDA libraries shared with .venv by hard links: {shared / 2**30:.1f} GiB not copied")
PY
then
    log "hard links failed: installing torch into the fresh environment"
    rm -rf "$WORK/venv"
    bash "$REPO/scripts/setup.sh" --torch-only "$WORK/venv"
fi
"$PY" -m pip install --quiet --disable-pip-version-check "${WHEEL[0]}"

mkdir -p "$WORK/run"
cd "$WORK/run"
LOCATION="$("$PY" -c 'import pdiff_hub; print(pdiff_hub.__file__)')"
case "$LOCATION" in
    "$WORK/venv/"*) log "pdiff_hub imported from $LOCATION" ;;
    *) echo "pdiff_hub comes from $LOCATION, not from the fresh environment" >&2; exit 1 ;;
esac

step() {  # step NAME SCRIPT ARGS...: run scripts/SCRIPT.py with the fresh environment's Python, output to NAME.log
    local name="$1" script="$2"
    shift 2
    log "$name"
    "$PY" "$REPO/scripts/$script.py" "$@" >"$WORK/$name.log" 2>&1 || { tail -n 40 "$WORK/$name.log"; exit 1; }
    tail -n 3 "$WORK/$name.log"
}
step collect collect --recipe digits-mlp --output_dir params --collect.num_checkpoints 20 --collect.base_epochs 1
step train train --recipe digits-mlp --param_dataset params --output_dir pipeline --train.autoencoder_steps 20 \
    --train.diffusion_steps 20 --evaluate.num_models 4 --report_to none
step generate generate --pipeline pipeline --num_models 4 --num_inference_steps 5 --select 2 --export_dir generated

"$PY" - <<'PY'
import json
from pathlib import Path

from huggingface_hub import ModelCard

cards = {"params/README.md": "p-diff", "pipeline/README.md": "p-diff pipeline: digits-mlp"}
samples = json.loads(Path("generated/generation.json").read_text())["samples"]
assert len(samples) == 2, samples
for sample in samples:
    folder = Path("generated") / sample["folder"]
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file(), folder
    cards[f"{folder}/README.md"] = "generated by p-diff"
for path, text in cards.items():  # rendered from the templates in the wheel
    assert text in ModelCard.load(path).text, f"{path} lacks {text!r}"
print("collect -> train -> generate from the installed wheel: ok")
PY
log "done in $SECONDS s"
