#!/usr/bin/env bash
# The main job: the thermal case end to end under mpirun -n 2 at a small default size.
# Usage: bash scripts/thermal.sh [case options, e.g. --size 40 --out run/big]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
exec "$MPIRUN" -n "${NP:-2}" "$PY" -m mpi4py cases/thermal.py "$@"
