#!/usr/bin/env bash
# One-call GPU session: build for the visible GPU (Hopper first: sm_90), run the
# tests (CUDA included), compute-sanitizer memcheck + racecheck over the CUDA
# tests, and both benchmark scripts. Writes gpu-check.log plus the benchmark
# JSON/markdown (4 files) to the folder given as $1, or $OUT, or ./gpu-out —
# few files, so the device tool brings them all back.
#
#   bash tools/gpu-check.sh [OUTDIR]
#
# Assumes torch, pytest, numpy, scipy and ninja are installed (as on the
# project's GPU machines); no network needed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${1:-${OUT:-gpu-out}}"
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu-check.log"
: > "$LOG"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
status=0

step() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
run() { "$@" >> "$LOG" 2>&1; }

step "environment"
run nvidia-smi
run "$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
run nvcc --version

# Packages the GPU image lacks (trimesh, for the pipeline tests) travel as wheels
# in the ignored folder .whl (device tool: carry [".whl"]); see the README.
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  step "installing carried wheels"
  run "$PY" -m pip install --no-index --no-deps .whl/*.whl
fi

step "build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
if ! run "$PY" -m pip install --no-build-isolation --no-deps -e .; then
  tail -40 "$LOG"; echo "BUILD FAILED"; exit 1
fi
"$PY" -c "import pcgrasp; print(pcgrasp.build_info())" 2>&1 | tee -a "$LOG"

step "tests (all, CUDA included)"
run "$PY" -m pytest -q -rs tests -p no:cacheprovider || status=1
grep -E "passed|failed|error" "$LOG" | tail -3

# compute-sanitizer over the CUDA tests only (the CPU tests add nothing there)
for tool in memcheck racecheck; do
  step "compute-sanitizer $tool"
  run compute-sanitizer --tool "$tool" --error-exitcode 9 --target-processes all \
    "$PY" -m pytest -q -x tests -k cuda -p no:cacheprovider || status=1
  grep -E "ERROR SUMMARY|passed|failed" "$LOG" | tail -2
done

step "benchmarks"
run "$PY" benchmarks/bench_ops.py --device cuda --out "$OUTDIR" || status=1
run "$PY" benchmarks/bench_contrastive.py --device cuda --out "$OUTDIR" || status=1
grep -E "pcgrasp [0-9.]+ ms" "$LOG" | tail -40

step "done (status $status)"
exit $status
