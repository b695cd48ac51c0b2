#!/usr/bin/env bash
# Set up (if needed) and train a binary MLP with QP-SBGD on the embedded default dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MPLBACKEND=Agg
bnn train examples/configs/default.toml "$@"
