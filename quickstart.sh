#!/usr/bin/env bash
# One command for a fresh machine: create .venv, install rlsmooth (with MinAtar and what `compare`
# needs), train the default short run.  Uses the GPU when PyTorch finds one, else the CPU.  Extra
# arguments are passed to `rlsmooth train`.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  echo "quickstart: creating .venv"
  python3 -m venv .venv
fi
echo "quickstart: installing rlsmooth with the minatar and report extras into .venv (a few minutes the first time)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[minatar,report]'
echo "quickstart: training configs/quickstart.yaml (DQN on MinAtar Breakout, 150k agent steps)"
echo "quickstart: afterwards, 'source .venv/bin/activate' puts the rlsmooth command on your PATH"
exec .venv/bin/python run.py train configs/quickstart.yaml "$@"
