#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the fast test suite. Extra arguments go to pytest:
#
#   bash scripts/test.sh              # fast tests (a few minutes on 2 cores)
#   bash scripts/test.sh -m slow      # end-to-end runs on real data
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup.sh"
cd "$REPO"
if [ "$#" -eq 0 ]; then
    set -- -m "not slow"
fi
exec "$REPO/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
