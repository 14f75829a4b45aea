#!/usr/bin/env bash
# Compile-checks single .cu files for sm_90 without building the extension:
#   bash tools/nvcc-check.sh csrc/knn/knn.cu [...]
# PYTHON picks the torch whose headers are used (default .venv/bin/python);
# JOBS files compile at once (default 1). The nvidia wheels' headers are
# searched after the toolkit's (-isystem), as setup.py does.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
TI="$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"
NV="$("$PY" -c 'import nvidia, glob, os; print(" ".join("-isystem " + d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "cu[0-9]*", "include"))))')"
PYINC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
JOBS="${JOBS:-1}"
one() {
  echo "nvcc $1"
  "$CUDA_HOME/bin/nvcc" -c "$1" -o /dev/null -std=c++20 -O1 -Icsrc -I"$TI" -I"$TI/torch/csrc/api/include" $NV -I"$PYINC" \
    -DPCGRASP_WITH_CUDA=1 -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
    -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ --expt-relaxed-constexpr \
    -gencode=arch=compute_90,code=sm_90 --compiler-options -fPIC
}
export -f one
export PY TI NV PYINC CUDA_HOME
printf '%s\n' "$@" | xargs -P "$JOBS" -I{} bash -c 'one "$@"' _ {}
