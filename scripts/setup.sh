#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with pdiff_hub and its development tools, and the offline
# datasets. Idempotent: a second run only checks.
#
#   bash scripts/setup.sh                   # then: source .venv/bin/activate
#   bash scripts/setup.sh --torch-only DIR  # only a virtual environment in DIR with torch and torchvision
#                                           # (.ci/wheel_test.sh installs the built wheel into it)
#
# PYTHON picks the interpreter (default python3). torch/torchvision: the pair that works with timm on this kind of
# machine is torch 2.14.1 + torchvision 0.29.1 (x86_64) or 2.9.1 + 0.24.1 (aarch64); set TORCH_SPEC to override.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
VENV="$REPO/.venv"
TORCH_ONLY=0
if [ "${1:-}" = "--torch-only" ]; then
    [ -n "${2:-}" ] || { echo "usage: bash scripts/setup.sh --torch-only DIR" >&2; exit 2; }
    TORCH_ONLY=1
    VENV="$2"
fi
log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
    if [ -z "${TORCH_SPEC:-}" ]; then
        case "$(uname -m)" in
            aarch64|arm64) TORCH_SPEC="torch==2.9.1 torchvision==0.24.1" ;;
            *) TORCH_SPEC="torch==2.14.1 torchvision==0.29.1" ;;
        esac
    fi
    log "installing $TORCH_SPEC"
    # shellcheck disable=SC2086
    "${PIP[@]}" $TORCH_SPEC
fi
if [ "$TORCH_ONLY" -eq 1 ]; then
    exit 0
fi
if ! "$VENV/bin/python" -c "import pdiff_hub, olah, pytest, build, importlinter" >/dev/null 2>&1; then
    log "installing pdiff_hub[dev]"
    "${PIP[@]}" -e ".[dev]"
fi
bash "$REPO/scripts/setup_data.sh"
log "ready: $("$VENV/bin/python" -c 'import torch, timm, diffusers; print(f"torch {torch.__version__}, timm {timm.__version__}, diffusers {diffusers.__version__}")')"
