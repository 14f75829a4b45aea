#!/usr/bin/env bash
# The whole GPU check in ONE call of the device tool: build for sm_90, the
# CUDA-vs-CPU tests, DDP / engine tests with CUDA visible, benchmarks,
# compute-sanitizer memcheck and racecheck, then the rest of the suite. Every
# step runs in a time box; results are flushed to OUTDIR after each step.
#
# HOW TO RUN IT ON THE GPU MACHINE (one call; a session has 15 device minutes,
# one command at most 10):
#   1. Here, with network, once:   bash tools/gpu-wheels.sh
#      (puts the cp312 wheels the GPU image lacks into the ignored .whl/, ~20 MiB)
#   2. Device tool `run` with
#        command:   bash tools/gpu-check.sh
#        carry:     [".whl"]
#        timeout_s: 570
#      (no kind: one H100 is enough). The steps are planned for 540 s in all, so
#      the call ends inside its limit; do not add other work to the command.
#   3. The files come back from $OUT (8 at most, the tool's limit): summary.md
#      (read it first: one row per step), gpu-check.log (everything), and the
#      benchmarks' <device>.{json,md}, <device>-contrastive.{json,md} and
#      <device>-sparse.{json,md}. summary.md is rewritten after every step and the
#      log is written as the steps run, so a call cut off still returns what ran.
#   Then give the machine back (give_back) unless you rerun at once.
#
# CI, or any machine without a GPU:
#   PYTHON=.venv/bin/python bash tools/gpu-check.sh --dry-run /tmp/gpu-dry   (make gpu-check-dry)
# runs the same steps with the same time boxes and writes the same summary.md,
# but each step does a cheap stand-in that catches a broken script: pytest
# steps collect (--collect-only) exactly the files and selections the real run
# would run, benchmarks run --help, the build step imports pcgrasp and checks
# the wheel install with pip --dry-run, the sanitizer steps print their command.
#
# Usage: bash tools/gpu-check.sh [--dry-run] [OUTDIR]     OUTDIR: default $OUT, else ./gpu-out
# Exit status: 0 when every step passed; 1 when a step failed or timed out;
# 2 when the time plan itself is wrong.
set -uo pipefail

# ----------------------------------------------------------------- the plan
# Steps in order, most informative first. A step gets SIGINT at the end of its
# box (pytest and the benchmarks then print / write what they have), and
# SIGKILL KILL_GRACE_S later if it is still running.
#   name       budget s  label
STEP_TABLE='
build        150  a. environment, carried wheels, build for sm_90
ops          100  b. CUDA-vs-CPU tests, by file
ddp           65  c. DDP / engine with CUDA visible
bench         90  d. benchmarks (bounded by --budget-s)
memcheck      60  e. compute-sanitizer memcheck, op tests
racecheck     30  f. compute-sanitizer racecheck, shared-memory kernels
rest          10  g. rest of the suite (also gets the time earlier steps left)
'
# The device tool kills a command at 600 s; 60 s stay free for slack in its
# start-up and transfers. Budgets plus each step's kill grace must fit in this.
PLAN_S=540
KILL_GRACE_S=5
MAX_OUT_FILES=8  # the device tool brings back at most 8 files from $OUT

# b: every test file with CUDA tests (device-parametrized or named *cuda*), run
# whole so that the CPU side of each CUDA-vs-CPU comparison runs there too.
# step_ops checks that no such file is missing from here or from DDP_FILES.
OPS_TESTS=(test_build.py test_knn.py test_ball_query.py test_cylinder_query.py test_fps.py
           test_gather.py test_interpolate.py test_correspondences.py test_point_info_nce.py
           test_sequencer_ragged.py test_voxelize.py test_kernel_map.py test_sparse_nn.py test_sparse_conv.py
           test_transfer.py)
# c: the engine and everything that checks gloo DDP with CPU tensors while CUDA
# is visible. One pytest run: -k also matches the module's file name.
DDP_FILES=(test_engine.py test_sync_batchnorm.py test_training.py test_train_detector.py test_graspcontrast.py)
DDP_K='test_engine.py or test_sync_batchnorm.py or (test_training.py and (ddp or resume))
 or (test_train_detector.py and ddp) or (test_graspcontrast.py and ddp)'
DDP_K="${DDP_K//$'\n'/}"
# f: the kernels with __shared__ memory: knn, ball_query and cylinder_query
# (tiles), fps and nearest_neighbor_order (block_argmax in common/cuda_utils.cuh), sparse_conv
# (shared tiles and accumulators).
RACE_TESTS=(test_knn.py test_ball_query.py test_cylinder_query.py test_sequencer_ragged.py test_fps.py
            test_sparse_conv.py)

# Carried wheels (tools/gpu-wheels.sh) install here, outside the image's Python.
WHEEL_SITE=/tmp/site
# The platform tags of the GPU image, for the dry run's pip check of the wheels.
WHEEL_PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

STOP_RC=3  # a step's exit status that means "nothing after this can run" (no build)

# ----------------------------------------------------------------- helpers
now() { echo "${EPOCHREALTIME:-$(date +%s)}"; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.0f", b - a}'; }
section() { echo; echo "--- $*"; }
paths() { local f; for f in "$@"; do printf 'tests/%s\n' "$f"; done; }
dry() { [ "$GC_DRY" = 1 ]; }

# Runs a tool if it is there; a missing one is only an error in a real run.
show() {
  if command -v "$1" >/dev/null 2>&1; then "$@"; return; fi
  echo "($1: not found)"
  dry
}

# pytest with the options every step shares. In a dry run it only collects,
# which still fails on a missing file or a selection that matches nothing.
run_pytest() {
  local opts=(-p no:cacheprovider -q -rs)
  dry && opts+=(--collect-only)
  echo "+ pytest ${opts[*]} $*"
  "$PY" -m pytest "${opts[@]}" "$@"
}

# Sets PAR: 4 pytest-xdist workers when xdist is installed (the GPU image has
# it; CUDA tests in several processes share the one GPU fine), each on 4 of the
# 16 cores; $1 is the --dist mode (loadfile keeps a module's fixtures in one
# worker). Plus pytest-timeout's per-test limit $2 when that is installed, so a
# hung test costs one test, not the step's box.
set_par() {
  PAR=()
  if "$PY" -c 'import xdist' 2>/dev/null; then PAR+=(-n 4 --dist "$1"); export OMP_NUM_THREADS=4; fi
  if "$PY" -c 'import pytest_timeout' 2>/dev/null; then PAR+=(--timeout "$2"); fi
}

# ----------------------------------------------------------------- steps
# Each runs in its own bash under `timeout`; it prints "@@result: ..." lines
# for summary.md (pytest's own summary line is picked up without one).

step_build() {
  local rc=0
  section "environment"
  show nvidia-smi || rc=1
  "$PY" -c 'import sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| torch cuda", torch.version.cuda,
      "| gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)' || rc=1
  show nvcc --version || rc=1
  show compute-sanitizer --version || rc=1
  git rev-parse HEAD 2>/dev/null && git status --short 2>/dev/null | head -30

  section "carried wheels (.whl/)"
  install_wheels || rc=1

  section "build"
  local build=(env TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS="$(nproc)"
               "$PY" -m pip install --no-build-isolation --no-deps -e .)
  if dry; then
    echo "(dry run: no rebuild) would run: ${build[*]}"
  else
    echo "+ ${build[*]}"
    "${build[@]}" || { echo "@@result: BUILD FAILED"; return $STOP_RC; }
  fi
  # build_info; a real run also needs the CUDA kernels (the tests would skip)
  "$PY" -c 'import sys, pcgrasp
i = pcgrasp.build_info(); print(i)
print("@@result: cuda_built=%s arch=%s torch=%s" % (i["cuda_built"], i["cuda_arch_list"], i["torch_version"]))
sys.exit(0 if i["cuda_built"] or sys.argv[1] == "1" else 4)' "$GC_DRY"
  case $? in
    0) ;;
    4) echo "CUDA kernels were not built: the CUDA tests will fail (test_build) or skip"; rc=1 ;;
    *) echo "@@result: import pcgrasp failed"; return $STOP_RC ;;
  esac
  return $rc
}

install_wheels() {
  local wheels=(.whl/*.whl)
  local cmd=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
             --target "$WHEEL_SITE")
  if [ ! -e "${wheels[0]}" ]; then
    echo "no wheels in .whl/: the tests that need trimesh, embreex, rtree or python-fcl will fail or skip"
    echo "(run 'bash tools/gpu-wheels.sh' here and carry .whl); the command would be:"
    echo "  ${cmd[*]} .whl/*.whl && export PYTHONPATH=$WHEEL_SITE"
    echo "@@result: no carried wheels"
    return 0
  fi
  if dry; then
    # the same command, resolved for the GPU image (CPython 3.12, its platform
    # tags) without installing: catches a bad flag, a wheel for the wrong
    # Python or platform, and two versions of one package
    local plat=() p
    for p in "${WHEEL_PLATFORMS[@]}"; do plat+=(--platform "$p"); done
    echo "+ ${cmd[*]} --dry-run --python-version 3.12 ... ${wheels[*]}"
    "${cmd[@]}" --dry-run --python-version 3.12 --implementation cp --only-binary=:all: "${plat[@]}" "${wheels[@]}" ||
      return 1
    echo "@@result: ${#wheels[@]} wheels resolve for cp312"
    return 0
  fi
  echo "+ ${cmd[*]} ${wheels[*]}   (PYTHONPATH=$PYTHONPATH)"
  "${cmd[@]}" "${wheels[@]}" || { echo "@@result: wheel install FAILED"; return 1; }
  "$PY" -c 'import trimesh, embreex, rtree, fcl; print("imports:", "trimesh", trimesh.__version__, "rtree", rtree.__version__,
           "| ray casting with embree:", __import__("trimesh.ray", fromlist=["has_embree"]).has_embree)' ||
    { echo "@@result: carried wheels installed but do not import"; return 1; }
  echo "@@result: ${#wheels[@]} wheels installed"
}

# Every test file that has CUDA tests must be in OPS_TESTS or DDP_FILES, or its
# CUDA tests would run only in the rest step and never under memcheck.
check_cuda_files_listed() {
  local f missing=()
  for f in $(grep -lE '\bDEVICES\b|requires_cuda|mark\.cuda|["'\'']cuda["'\'']' tests/test_*.py); do
    f=${f#tests/}
    [[ " ${OPS_TESTS[*]} ${DDP_FILES[*]} " == *" $f "* ]] || missing+=("$f")
  done
  [ ${#missing[@]} = 0 ] && return 0
  echo "@@result: CUDA test files missing from OPS_TESTS in tools/gpu-check.sh: ${missing[*]}"
  return 1
}

step_ops() {
  local rc=0
  check_cuda_files_listed || rc=1
  set_par load 60
  run_pytest "${PAR[@]}" $(paths "${OPS_TESTS[@]}") || rc=1
  return $rc
}

step_ddp() {
  set_par loadfile 60
  run_pytest "${PAR[@]}" $(paths "${DDP_FILES[@]}") -k "$DDP_K"
}

# The benchmarks share the box: sparse first (2 cases, a fixed 10 s), then ops
# and contrastive, each told by --budget-s when to stop starting cases. A case
# already running finishes (a few s with --budget 1: one warm-up plus up to 7
# timed runs of at most 1 s in all per callable), hence the margins.
step_bench() {
  local rc=0 box=$GC_STEP_BOX
  bench bench_sparse.py 10 || rc=1
  bench bench_ops.py $(( box * 55 / 100 - SECONDS )) || rc=1
  bench bench_contrastive.py $(( box - 15 - SECONDS )) || rc=1
  return $rc
}

bench() {  # bench SCRIPT BUDGET_S
  local script=$1 budget=$(( $2 > 1 ? $2 : 1 )) out="$GC_TMP/${1%.py}.txt"
  section "$script"
  if dry; then
    echo "+ $PY benchmarks/$script --help"
    "$PY" "benchmarks/$script" --help > "$out" 2>&1 || { cat "$out"; echo "@@result: $script --help failed"; return 1; }
    local opt
    for opt in --budget-s --out --device --budget; do
      grep -q -- "$opt" "$out" || { cat "$out"; echo "@@result: $script has no $opt"; return 1; }
    done
    echo "@@result: $script --help ok"
    return 0
  fi
  local cmd=("$PY" "benchmarks/$script" --device cuda --out "$GC_OUT" --budget 1 --budget-s "$budget")
  echo "+ ${cmd[*]}"
  # tee -i: the box's SIGINT reaches this whole process group; a tee that died
  # of it would make the benchmark's last prints fail before it writes results
  "${cmd[@]}" 2>&1 | tee -i "$out"
  local brc=${PIPESTATUS[0]}
  local n stopped
  n=$(grep -c ': pcgrasp [0-9.]* ms' "$out")
  stopped=$(grep -o '^stopped ([a-z]*)[^:]*: [0-9]* case(s) not run' "$out" | tail -1)
  echo "@@result: ${script%.py}: $n cases${stopped:+, $stopped}$( [ "$brc" = 0 ] || echo ", exit $brc")"
  return "$brc"
}

# compute-sanitizer TOOL PYTEST-ARGS...: one pytest run under the sanitizer.
sanitize() {
  local tool=$1; shift
  local cmd=(compute-sanitizer --tool "$tool" --error-exitcode 9
             "$PY" -m pytest -p no:cacheprovider -q -rs "$@")
  local shown="${PYTORCH_NO_CUDA_MEMORY_CACHING:+PYTORCH_NO_CUDA_MEMORY_CACHING=1 }${cmd[*]}"
  if dry; then
    echo "(dry run) would run: $shown"
    command -v compute-sanitizer >/dev/null || echo "(compute-sanitizer not here: fine for a dry run)"
    run_pytest "$@"
    return
  fi
  command -v compute-sanitizer >/dev/null || { echo "@@result: compute-sanitizer not found"; return 1; }
  echo "+ $shown"
  "${cmd[@]}"
}

# PYTORCH_NO_CUDA_MEMORY_CACHING=1: torch's caching allocator hands out pieces
# of larger cached blocks, so an out-of-bounds access that stays inside such a
# block is invisible to memcheck; without it each tensor is its own allocation.
step_memcheck() {
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 sanitize memcheck $(paths "${OPS_TESTS[@]}") -m cuda
}

step_racecheck() {
  sanitize racecheck $(paths "${RACE_TESTS[@]}") -m cuda
}

step_rest() {
  local ignores=() f
  for f in "${OPS_TESTS[@]}"; do ignores+=(--ignore "tests/$f"); done
  set_par loadfile 60
  run_pytest "${PAR[@]}" tests "${ignores[@]}" -k "not ($DDP_K)"
}

# ----------------------------------------------------------------- driver
# A child process runs one step (so that `timeout` can box it); it ends at the
# box's SIGINT once the command in flight has written what it has.
if [ "${1:-}" = "--run-step" ]; then
  cd "$(dirname "$0")/.." || exit 1
  trap 'echo "(time box over: step interrupted)"; exit 130' INT
  "step_$2"
  exit $?
fi

declare -A BUDGET LABEL STATUS WALL RESULT BOX
STEP_NAMES=()

# Reads STEP_TABLE; fails when the budgets do not fit the plan.
load_plan() {
  local name budget label sum=0
  while read -r name budget label; do
    [ -n "$name" ] || continue
    [[ "$budget" =~ ^[0-9]+$ ]] || { echo "ERROR: bad budget '$budget' for step $name" | tee -a "$LOG"; return 1; }
    STEP_NAMES+=("$name"); BUDGET[$name]=$budget; LABEL[$name]=$label
    sum=$((sum + budget))
  done <<< "$STEP_TABLE"
  local worst=$((sum + ${#STEP_NAMES[@]} * KILL_GRACE_S))
  echo "time plan: ${#STEP_NAMES[@]} steps, budgets $sum s; with ${KILL_GRACE_S} s kill grace each $worst s; limit $PLAN_S s" |
    tee -a "$LOG"
  if [ "$sum" -gt "$PLAN_S" ] || [ "$worst" -gt "$PLAN_S" ]; then
    echo "ERROR: the step budgets do not fit in $PLAN_S s: shorten some in STEP_TABLE" | tee -a "$LOG"
    return 1
  fi
}

budget_cell() {  # the budget, and the box when it grew (the last step's)
  local b=${BUDGET[$1]} x=${BOX[$1]:-${BUDGET[$1]}}
  if [ "$x" -gt "$b" ]; then echo "$b (+$((x - b)) left over)"; else echo "$b"; fi
}

cell() {  # a table cell: no pipes or newlines, not too long
  local s=${1//|/\\|}; s=${s//$'\n'/; }
  [ ${#s} -le 300 ] || s="${s:0:297}..."
  printf '%s' "$s"
}

write_summary() {
  local name
  {
    echo "# GPU check$(dry && echo ' (dry run: stand-ins only)')"
    echo
    echo "$(date -u '+%F %T UTC'); $GPU_NAME; commit $COMMIT."
    echo "Plan: $PLAN_S s in all (step budgets plus ${KILL_GRACE_S} s kill grace each); elapsed $(secs_since "$T_START") s."
    echo
    echo "| step | budget s | wall s | exit status | result |"
    echo "|---|---:|---:|---|---|"
    for name in "${STEP_NAMES[@]}"; do
      echo "| ${LABEL[$name]} | $(budget_cell "$name") | ${WALL[$name]:--} | ${STATUS[$name]:-pending} | $(cell "${RESULT[$name]:-}") |"
    done
    [ -z "${FINAL_NOTE:-}" ] || { echo; echo "$FINAL_NOTE"; }
    echo
    echo "Details: gpu-check.log (each step's output under its '=== step' header)."
  } > "$GC_OUT/summary.md"
}

# The line summary.md shows for a step: its "@@result:" lines, pytest's
# summary line, the sanitizer's and pytest's usage error, whichever there are.
step_result() {
  local out=$1 parts=() line
  while IFS= read -r line; do parts+=("${line#@@result: }"); done < <(grep '^@@result: ' "$out")
  line=$(grep -E '(passed|failed|errors?|skipped|deselected|collected|no tests ran|xfailed|xpassed).* in [0-9.]+s' "$out" |
         tail -1 | sed -E 's/^=+ //; s/ =+$//')
  [ -z "$line" ] || parts+=("$line")
  line=$(grep -E '(ERROR|RACECHECK) SUMMARY' "$out" | tail -1 | sed -E 's/^=+ *//')
  [ -z "$line" ] || parts+=("$line")
  line=$(grep -E '^ERROR: ' "$out" | tail -1)  # pytest's usage errors: a missing file, a bad option
  [ -z "$line" ] || parts+=("$line")
  local IFS=';'
  echo "${parts[*]}" | sed 's/;/; /g'
}

run_step() {
  local name=$1 box=$2 out="$GC_TMP/step-$1.out" t0 rc wall
  echo "=== step ${LABEL[$name]} (box ${box} s) $(date -u +%T)" | tee -a "$LOG"
  t0=$(now)
  GC_STEP_BOX=$box timeout -s INT -k "$KILL_GRACE_S" "$box" "${DEFAULT_INT[@]}" bash "$SELF" --run-step "$name" \
    < /dev/null 2>&1 | tee -a "$LOG" > "$out"
  rc=${PIPESTATUS[0]}
  wall=$(secs_since "$t0")
  WALL[$name]=$wall
  if { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && [ "$wall" -ge $((box - 1)) ]; then
    STATUS[$name]="timed out"
  elif [ "$rc" = 0 ]; then
    STATUS[$name]=ok
  else
    STATUS[$name]="failed (exit $rc)"
  fi
  RESULT[$name]=$(step_result "$out")
  echo "    -> ${STATUS[$name]} in ${wall} s: ${RESULT[$name]}" | tee -a "$LOG"
  LAST_RC=$rc
}

main() {
  local outdir="" arg
  GC_DRY=0
  for arg in "$@"; do
    case "$arg" in
      --dry-run) GC_DRY=1 ;;
      -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      -*) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
      *) outdir=$arg ;;
    esac
  done
  outdir=${outdir:-${OUT:-gpu-out}}
  # paths the caller gave are relative to the caller's folder, not the repo's
  mkdir -p "$outdir" || exit 2
  GC_OUT=$(cd "$outdir" && pwd)
  PY="${PYTHON:-python3}"
  case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac  # keep the venv's link
  SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
  cd "$(dirname "$SELF")/.." || exit 2

  LOG="$GC_OUT/gpu-check.log"
  : > "$LOG"
  T_START=$(now)
  GC_TMP=$(mktemp -d)
  trap 'rm -rf "$GC_TMP"' EXIT
  # unbuffered: the log must hold what a step printed before its box ended;
  # no pip self-check: the GPU machine has no network, and pip would wait for it
  export GC_DRY GC_OUT GC_TMP PY PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  if ! dry; then
    export PCGRASP_EXPECT_CUDA=1  # test_build.py fails if the CUDA kernels were not built
    if compgen -G ".whl/*.whl" >/dev/null; then export PYTHONPATH="$WHEEL_SITE${PYTHONPATH:+:$PYTHONPATH}"; fi
  fi
  # A command started in the background without job control inherits SIGINT
  # ignored, and then neither bash nor Python can catch it: the box's SIGINT
  # would do nothing and SIGKILL would lose the step's summary. env resets it.
  DEFAULT_INT=()
  if env --default-signal=INT true 2>/dev/null; then DEFAULT_INT=(env --default-signal=INT); fi
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  GPU_NAME=${GPU_NAME:-no GPU visible}
  COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

  if ! load_plan; then
    FINAL_NOTE="The time plan does not fit in $PLAN_S s: nothing ran."
    write_summary
    exit 2
  fi
  write_summary

  local status=0 name stop=0 box
  for name in "${STEP_NAMES[@]}"; do
    if [ "$stop" = 1 ]; then STATUS[$name]="not run (build failed)"; status=1; continue; fi
    box=${BUDGET[$name]}
    if [ "$name" = "${STEP_NAMES[-1]}" ]; then
      # the last step also gets what the earlier ones left of the plan
      box=$(( PLAN_S - $(secs_since "$T_START") - KILL_GRACE_S ))
      [ "$box" -ge 1 ] || box=1
    fi
    BOX[$name]=$box
    STATUS[$name]="running since $(date -u +%T) (the call ended here if this stays)"
    write_summary
    run_step "$name" "$box"
    [ "${STATUS[$name]}" = ok ] || status=1
    if [ "$name" = build ] && { [ "$LAST_RC" = "$STOP_RC" ] || [ "${STATUS[$name]}" = "timed out" ]; }; then stop=1; fi
    write_summary
  done

  local nfiles
  nfiles=$(find "$GC_OUT" -type f | wc -l)
  FINAL_NOTE="Files in the output folder: $nfiles (the device tool returns at most $MAX_OUT_FILES)."
  if [ "$nfiles" -gt "$MAX_OUT_FILES" ]; then FINAL_NOTE+=" TOO MANY: some will not come back."; status=1; fi
  FINAL_NOTE+=" Overall: $([ "$status" = 0 ] && echo PASS || echo FAIL)."
  write_summary
  echo; cat "$GC_OUT/summary.md"
  cat "$GC_OUT/summary.md" >> "$LOG"
  exit $status
}

main "$@"
