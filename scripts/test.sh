#!/usr/bin/env bash
# The whole test suite: lint (ruff), serial tests, then the collective tests under mpirun -n 2 and the
# partition-sensitive ones under mpirun -n 3. Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
LOGDIR="$(mktemp -d)"
rm -f .pytest-rank*.log
status=0

EXTRA=("$@")
EXTRA_Q=$(printf '%q ' "$@")  # quoted again for the other ranks' bash -c (e.g. -k "a or b")
run_mpi() {  # run_mpi NPROCS MARKER: rank 0 on the console, other ranks into log files
  local n=$1 marker=$2 rc=0
  echo "=== mpirun -n $n: tests marked '$marker' ==="
  timeout 1500 "$MPIRUN" -n 1 "$PY" -m pytest -m "$marker" -p no:cacheprovider \
      --junitxml="$LOGDIR/mpi$n-r0.xml" "${EXTRA[@]}" \
    : -n $((n - 1)) bash -c "exec '$PY' -m pytest -m '$marker' -p no:cacheprovider \
      --junitxml='$LOGDIR/mpi$n-r'\$PMI_RANK.xml $EXTRA_Q > .pytest-rank\$PMI_RANK.log 2>&1" || rc=$?
  if [ $rc -ne 0 ]; then
    for f in .pytest-rank*.log; do echo "--- $f ---"; tail -n 60 "$f"; done
  fi
  return $rc
}

echo "=== lint: ruff check, ruff format --check ==="
"$(dirname "$PY")/ruff" check . || status=1
"$(dirname "$PY")/ruff" format --check . || status=1

echo "=== serial: all tests ==="
"$PY" -m pytest -p no:cacheprovider --junitxml="$LOGDIR/serial.xml" "${EXTRA[@]}" || status=1
run_mpi 2 mpi || status=1
run_mpi 3 partition || status=1

"$PY" - "$LOGDIR" <<'PYEOF'
import glob, sys, xml.etree.ElementTree as ET
p = f = s = 0
for path in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    for ts in ET.parse(path).getroot().iter("testsuite"):
        t, fl, er, sk = (int(ts.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        p += t - fl - er - sk; f += fl + er; s += sk
print("(serial run, then 2- and 3-rank runs with every rank counted)")
print(f"total: {p} passed, {f} failed, {s} skipped")
PYEOF
exit $status
