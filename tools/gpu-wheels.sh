#!/usr/bin/env bash
# Fetches into .whl/ (git-ignored) the wheels that the GPU machines' image lacks,
# so that tools/gpu-check.sh can install them there: that machine has no network,
# and a package reaches it only as a file carried with the working tree
# (device tool: carry [".whl"], 64 MiB in all with the checkout).
#
#   bash tools/gpu-wheels.sh        # here, with network; then run the GPU check
#
# The image runs CPython 3.12 on x86-64, so the wheels are cp312 manylinux ones,
# whatever this machine runs. Versions are pinned to the ones the project's
# .venv (and so CI) tests with. Ray is left out on purpose: its wheel alone is
# over the carry limit, and the tests that need it skip without it.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
DEST=.whl
LIMIT_MIB=48  # leaves room for the checkout itself inside the 64 MiB carry limit

# What the image lacks, pinned (same versions as .venv where a cp312 wheel exists).
PINS=(
  trimesh==5.2.0
  embreex==4.4.0.post1
  rtree==1.4.1
  python-fcl==0.7.0.11
)
# Their requirements that the image already has (its package list: the device
# tool's KINDS.md, "Python packages already there"). A requirement in neither
# this list nor PINS makes the script fail: carry it too, or list it here.
IMAGE_HAS=(numpy cython)

# The platform tags the image accepts; pip matches each manylinux tag exactly.
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

die() { echo "gpu-wheels: $*" >&2; exit 1; }

# PEP 503 normalised name, as in wheel file names (python-fcl -> python_fcl)
norm() { echo "$1" | tr 'A-Z' 'a-z' | sed 's/[-_.]\+/_/g'; }

# Drops other versions of the pinned packages: two versions of one package
# make the whole install there fail.
drop_stale() {
  local pin name ver f
  for pin in "${PINS[@]}"; do
    name=$(norm "${pin%%==*}"); ver="${pin##*==}"
    for f in "$DEST"/*.whl; do
      [ -e "$f" ] || continue
      local base; base=$(basename "$f")
      local fname; fname=$(norm "${base%%-*}")
      local fver; fver=$(echo "$base" | cut -d- -f2)
      if [ "$fname" = "$name" ] && [ "$fver" != "$ver" ]; then
        echo "removing stale $base"; rm -f "$f"
      fi
    done
  done
}

download() {
  local args=() p
  for p in "${PLATFORMS[@]}"; do args+=(--platform "$p"); done
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${args[@]}" -d "$DEST" "${PINS[@]}" || die "pip download failed"
}

# Warns when .venv has another version than the pin (the pins should follow it).
compare_with_venv() {
  local venv_py=.venv/bin/python pin name have
  [ -x "$venv_py" ] || return 0
  for pin in "${PINS[@]}"; do
    name="${pin%%==*}"
    have=$("$venv_py" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    [ -z "$have" ] || [ "$have" = "${pin##*==}" ] ||
      echo "note: .venv has $name $have, the pin is ${pin##*==}"
  done
}

# Every non-extra Requires-Dist of every wheel must be carried or in the image.
check_requirements() {
  local ok=1 f req rname known
  known=" $(for p in "${PINS[@]}"; do norm "${p%%==*}"; done | tr '\n' ' ') "
  known+="$(for p in "${IMAGE_HAS[@]}"; do norm "$p"; done | tr '\n' ' ') "
  for f in "$DEST"/*.whl; do
    while IFS= read -r req; do
      [ -n "$req" ] || continue
      case "$req" in *"extra =="*) continue ;; esac
      rname=$(norm "$(echo "$req" | sed -E 's/^Requires-Dist: *([A-Za-z0-9_.-]+).*/\1/')")
      echo "  $(basename "$f"): ${req#Requires-Dist: }"
      case "$known" in *" $rname "*) ;; *) echo "    MISSING on the GPU image: $rname"; ok=0 ;; esac
    done < <(unzip -p "$f" '*.dist-info/METADATA' | grep '^Requires-Dist' | tr -d '\r')
  done
  [ "$ok" = 1 ] || die "a requirement above is neither carried nor in the image"
}

check_one_version_each() {
  local dups
  dups=$(for f in "$DEST"/*.whl; do norm "$(basename "$f" | cut -d- -f1)"; done | sort | uniq -d)
  [ -z "$dups" ] || die "several versions of: $dups (remove all but one from $DEST)"
}

check_size() {
  local bytes mib
  bytes=$(cat "$DEST"/*.whl | wc -c)
  mib=$(awk -v b="$bytes" 'BEGIN{printf "%.1f", b/1048576}')
  echo "total: $mib MiB in $(ls "$DEST"/*.whl | wc -l) wheels (limit $LIMIT_MIB MiB)"
  [ "$bytes" -le $((LIMIT_MIB * 1048576)) ] || die "over $LIMIT_MIB MiB: carry fewer wheels"
}

command -v unzip >/dev/null || die "needs unzip"
mkdir -p "$DEST"
drop_stale
download
compare_with_venv
check_one_version_each
echo "requirements (non-extra):"
check_requirements
ls -l "$DEST"/*.whl | awk '{printf "  %8.1f KiB  %s\n", $5/1024, $NF}'
check_size
