#!/usr/bin/env bash
# One command for a fresh machine: create .venv, install rlsmooth, train the default short run.
# Uses the GPU when PyTorch finds one, else the CPU.  Extra arguments are passed to `run.py train`.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[minatar]'
exec .venv/bin/python run.py train configs/quickstart.yaml "$@"
