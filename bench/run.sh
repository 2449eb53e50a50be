#!/usr/bin/env bash
# The one command: bash bench/run.sh [run.py options]
# Builds bench/.venv (the peers, numpy, matplotlib and this checkout, editable), then runs
# every scenario for every peer and writes bench/results/{results-<date>.json,table.md,chart.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv
LOG=bench/.venv-install.log
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
echo "bench: installing into $VENV (log: $LOG)" >&2
{
  "$VENV/bin/pip" install --disable-pip-version-check \
    "joblib==1.6.0" "diskcache==5.6.3" "cachier==4.2.0" "persist-cache==0.4.4" numpy matplotlib \
    pandas pyarrow polars "torch<2.14"
  # this checkout, editable, so the benchmark measures the code as it is now
  "$VENV/bin/pip" install --disable-pip-version-check -e .
  # persist-to-disk 0.0.7 has our import name and pins filelock==3.9.0: it gets a folder of its own, put
  # first on sys.path only in the processes that benchmark it (it imports six without declaring it)
  if [ ! -f "$VENV/ptd007/persist_to_disk/__init__.py" ]; then
    "$VENV/bin/pip" install --disable-pip-version-check --target "$VENV/ptd007" "persist-to-disk==0.0.7" six
  fi
} >"$LOG" 2>&1 || { tail -30 "$LOG" >&2; exit 1; }
exec "$VENV/bin/python" bench/run.py "$@"
