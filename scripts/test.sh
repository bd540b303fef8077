#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the fast test suite of pdiff_hub. Extra arguments go to pytest:
#
#   bash scripts/test.sh                             # fast tests (a few minutes on 2 cores)
#   bash scripts/test.sh -m "slow and not fixture"   # end-to-end runs on real data
#   bash scripts/test.sh -m fixture                  # checks of the test fixtures (the loopback Hub), not of pdiff_hub
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup.sh"
cd "$REPO"
if [ "$#" -eq 0 ]; then
    set -- -m "not slow and not fixture"
fi
exec "$REPO/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
