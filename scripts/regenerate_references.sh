#!/usr/bin/env bash
# Regenerate the stored reference figures data/references/<case>.json after an intended change
# of a case's results: runs each case serially at the small size stored in its reference file,
# rewrites the values and keeps every stored tolerance and reason (tests/regression.py).
# Usage: bash scripts/regenerate_references.sh [CASE...]   (default: thermal local_bases
# adaptive_blade). Review the change with `git diff data/` before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
"$PY" tests/regression.py --regenerate "$@"
