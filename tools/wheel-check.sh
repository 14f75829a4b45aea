#!/usr/bin/env bash
# Install as users do, and use it from outside the checkout:
#   1. an sdist (python -m build --sdist), then a wheel built FROM that sdist, so a file the
#      sdist leaves out (a header, a config, a package without __init__.py) fails here;
#   2. a fresh virtual environment: torch (TORCH_SPEC), then the wheel, non-editable, with its
#      install requirements from the package index;
#   3. tools/smoke_installed.py, run from a temporary folder: imports from site-packages, every
#      op once, every CLI command's --help, one small end-to-end command.
# The wheel is built CPU-only (PCGRASP_CPU_ONLY=1) to keep CI short: the CUDA sources compile in
# `make test`, and packaging does not depend on them.
#
#   bash tools/wheel-check.sh [PYTHON]      (default .venv/bin/python: a Python with torch, build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="${1:-.venv/bin/python}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0,!=2.13.0+cpu}"
WORK="$(mktemp -d /tmp/pcgrasp-wheel.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

echo "== sdist"
# the editable build's record (pcgrasp/_build_config.py) must survive an sdist build: only
# build_ext writes it (an sdist once rewrote it with this shell's CUDA settings)
CFG=pcgrasp/_build_config.py
[ -f "$CFG" ] && cp "$CFG" "$WORK/build_config.before"
"$PY" -m build --sdist --no-isolation --outdir "$WORK/dist" . >"$WORK/sdist.log" 2>&1 || { tail -30 "$WORK/sdist.log"; exit 1; }
if [ -f "$WORK/build_config.before" ]; then
  cmp -s "$CFG" "$WORK/build_config.before" || { echo "the sdist build rewrote $CFG"; diff "$WORK/build_config.before" "$CFG"; exit 1; }
fi
SDIST="$(ls "$WORK"/dist/pcgrasp-*.tar.gz)"
echo "$SDIST ($(du -h "$SDIST" | cut -f1))"

echo "== wheel from the sdist (CPU kernels)"
PCGRASP_CPU_ONLY=1 "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$WORK/dist" "$SDIST" \
  >"$WORK/wheel.log" 2>&1 || { tail -40 "$WORK/wheel.log"; exit 1; }
WHEEL="$(ls "$WORK"/dist/pcgrasp-*.whl)"
echo "$WHEEL"
"$PY" - "$WHEEL" <<'PYEOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
pkgs = sorted({n.rsplit("/", 1)[0] for n in names if n.startswith("pcgrasp/") and n.endswith(".py")})
missing = [p for p in pkgs if p + "/__init__.py" not in names]
assert not missing, f"folders without __init__.py in the wheel: {missing}"
assert any(n.startswith("pcgrasp/_C") for n in names), "no compiled extension in the wheel"
assert any(n.startswith("pcgrasp/configs/") for n in names), "no configs in the wheel"
print(f"wheel: {len(names)} files, packages: {', '.join(p.replace('/', '.') for p in pkgs)}")
PYEOF

echo "== fresh venv, non-editable install"
BASE="$("$PY" -c 'import sys; print(sys._base_executable)')"
"$BASE" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VPY" -m pip install -q "$TORCH_SPEC" 2>&1 | grep -v "^WARNING: Location" || true
"$VPY" -m pip install -q "$WHEEL" 2>&1 | grep -v "^WARNING: Location" || true
"$VPY" -c "import pcgrasp" || { echo "the installed wheel does not import"; exit 1; }

echo "== smoke test from outside the checkout"
cp tools/smoke_installed.py "$WORK/"
cd "$WORK"
PATH="$WORK/venv/bin:$PATH" "$VPY" smoke_installed.py
