#!/usr/bin/env bash
# Build the documentation into site/ with one command: mkdocs build --strict (no warnings),
# executing the case pages (cases/*.py, jupytext percent format; docs/hooks.py) at a small size.
# Installs the docs extra into .venv when it is missing. Usage: bash scripts/docs.sh [mkdocs args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
if ! "$PY" -c "import mkdocs, mkdocstrings_handlers.python, mkdocs_jupyter, jupytext, ipykernel, material" 2>/dev/null; then
  echo "[docs] installing the docs extra into $(dirname "$(dirname "$PY")")" >&2
  "$PY" -m pip install -q -e ".[docs]" >&2
fi
export PATH="$(dirname "$PY"):$PATH"   # the notebook kernel runs this environment's python
export ROM_DOCS_SMALL="${ROM_DOCS_SMALL:-1}"
export PYDEVD_DISABLE_FILE_VALIDATION=1 NO_MKDOCS_2_WARNING=1
exec "$PY" -m mkdocs build --strict --clean "$@"
