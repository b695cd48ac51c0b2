#!/usr/bin/env bash
# Create ./.venv (once) and install qsgd with the extras the README commands need.
# torch is pinned first so pip never resolves a multi-GB CUDA build of it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.qsgd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-ci.txt -nt "$stamp" ]; then
  python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  python -m pip install --quiet -r requirements-ci.txt
  python -m pip install --quiet -e ".[dwave,lightning,distributed,dev]"
  touch "$stamp"
fi
