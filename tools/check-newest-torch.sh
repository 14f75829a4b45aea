#!/usr/bin/env bash
# Compile-only check of every CUDA kernel against the newest torch on the
# package index (its CUDA wheels may be newer than the local nvcc): a second
# virtualenv with that torch, then tools/nvcc-check.sh on all .cu files. No
# extension is linked and no test runs; CI calls it after `make test`.
#
#   bash tools/check-newest-torch.sh            # TORCH_NEWEST=torch==2.15.0
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvcc >/dev/null 2>&1 || { echo "check-newest-torch: no nvcc, skipped"; exit 0; }
TORCH_NEWEST="${TORCH_NEWEST:-torch==2.15.0}"
VENV="${VENV_NEWEST:-.venv-newest}"
if [ ! -f "$VENV/.ok-$TORCH_NEWEST" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$TORCH_NEWEST"
  touch "$VENV/.ok-$TORCH_NEWEST"
fi
"$VENV/bin/python" -c "import torch; print('newest torch:', torch.__version__, 'CUDA', torch.version.cuda)"
PYTHON="$VENV/bin/python" JOBS="${MAX_JOBS:-2}" bash tools/nvcc-check.sh $(find csrc -name '*.cu' | sort)
echo "check-newest-torch: every .cu compiles against $TORCH_NEWEST"
