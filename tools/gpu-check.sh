#!/usr/bin/env bash
# One-call GPU session: build for the visible GPU (Hopper first: sm_90), run the
# CUDA tests, compute-sanitizer memcheck + racecheck over them, and the
# benchmarks. Logs and JSON go to the folder given as $1, or $OUT, or ./gpu-out.
#
#   bash tools/gpu-check.sh [OUTDIR]
#
# Assumes torch, pytest, numpy, scipy and ninja are installed (as on the
# project's GPU machines); no network needed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${1:-${OUT:-gpu-out}}"
mkdir -p "$OUTDIR"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
status=0

step() { echo "=== $* ($(date +%T))"; }

step "environment"
{ nvidia-smi; "$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"; nvcc --version; } \
  > "$OUTDIR/env.log" 2>&1
tail -3 "$OUTDIR/env.log"

step "build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
if ! "$PY" -m pip install --no-build-isolation --no-deps -e . > "$OUTDIR/build.log" 2>&1; then
  tail -40 "$OUTDIR/build.log"; echo "BUILD FAILED"; exit 1
fi
"$PY" -c "import pcgrasp; print(pcgrasp.build_info())" | tee -a "$OUTDIR/build.log"

step "tests (all, CUDA included)"
"$PY" -m pytest -q tests -p no:cacheprovider > "$OUTDIR/tests.log" 2>&1 || status=1
tail -5 "$OUTDIR/tests.log"

# compute-sanitizer over the CUDA tests only (the CPU tests add nothing there)
for tool in memcheck racecheck; do
  step "compute-sanitizer $tool"
  compute-sanitizer --tool "$tool" --error-exitcode 9 --target-processes all \
    "$PY" -m pytest -q -x tests -k cuda -p no:cacheprovider > "$OUTDIR/sanitizer-$tool.log" 2>&1 || status=1
  grep -E "ERROR SUMMARY|passed|failed" "$OUTDIR/sanitizer-$tool.log" | tail -3
done

step "benchmarks"
"$PY" benchmarks/bench_ops.py --device cuda --out "$OUTDIR" > "$OUTDIR/bench.log" 2>&1 || status=1
tail -30 "$OUTDIR/bench.log"

step "done (status $status)"
exit $status
