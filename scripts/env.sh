# Source me: creates (or refreshes) the project's virtual environment .venv with Python >= 3.12
# and the project installed with its finite-element and test extras. Sets PY and MPIRUN.
# Works on a fresh machine with nothing installed by hand (python3.12 from PATH or pyenv).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROM_VENV:-$ROOT/.venv}"

_find_python() {
  local c v p
  for c in ${PYTHON:-} python3.12 python3.13 python3; do
    if command -v "$c" >/dev/null 2>&1 &&
      "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then  # pyenv shims hide non-global versions
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[2-9]' | sort -V); do
      p="$(pyenv root)/versions/$v/bin/python3"
      if [ -x "$p" ]; then echo "$p"; return 0; fi
    done
  fi
  echo "error: no Python >= 3.12 found (install python3.12 or set PYTHON=/path/to/python3.12)" >&2
  return 1
}

_extras="${ROM_EXTRAS:-fem,test}"
_stamp="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-$_extras"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.rom-stamp" 2>/dev/null)" != "$_stamp" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    _py="$(_find_python)"
    echo "[env] creating $VENV with $("$_py" --version)" >&2
    "$_py" -m venv "$VENV"
  fi
  echo "[env] installing the project with extras [$_extras] (first run: a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$_extras]" >&2
  echo "$_stamp" >"$VENV/.rom-stamp"
fi
PY="$VENV/bin/python"
MPIRUN="$VENV/bin/mpirun"
export PYTHONUNBUFFERED=1
