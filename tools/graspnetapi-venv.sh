#!/usr/bin/env bash
# Scratch venv with graspnetAPI 1.2.11's evaluator, for tools/graspnet_parity.py.
#
#   tools/graspnetapi-venv.sh [VENV_DIR]      (default: $GRASPNETAPI_VENV or
#                                             $HOME/.cache/pcgrasp/graspnetapi-venv)
#
# graspnetAPI 1.2.11 pins numpy==1.20.3 / transforms3d==0.3.1 and pulls the
# deprecated `sklearn` package, none of which install on Python 3.11. So this
# script never lets pip resolve graspnetAPI's requirements: it installs an
# explicit, minimal list of what the evaluator imports (with --no-deps for the
# packages whose own requirements are heavy or broken), downloads the sdist,
# unpacks it into the venv and patches ONLY the NumPy aliases that current
# NumPy removed (np.int, np.float, np.bool, ...), printing each patch.
# Nothing is installed into the project's .venv; graspnetAPI is used from
# $VENV/src/graspnetAPI-1.2.11 via PYTHONPATH (the worker sets it).
#
# Idempotent: each step leaves a stamp file and is skipped when done.
# Needs python3.11 on PATH (PYTHON=... to override), network access to the
# Python package index and, for open3d, the Debian package libusb-1.0-0.
set -euo pipefail

VENV="${1:-${GRASPNETAPI_VENV:-$HOME/.cache/pcgrasp/graspnetapi-venv}}"
PY="${PYTHON:-python3.11}"
GN_VERSION=1.2.11
SRC="$VENV/src"
say() { printf '[graspnetapi-venv] %s\n' "$*"; }

case "$(cd "$(dirname "$0")/.." && pwd)/.venv" in
  "$(cd "$(dirname "$VENV")" 2>/dev/null && pwd)/$(basename "$VENV")")
    say "refusing to use the project's .venv ($VENV)"; exit 2 ;;
esac

# open3d's wheel links libusb-1.0; install the Debian package when we can (root + apt-get), else say so
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1\.0\.so'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing the Debian package libusb-1.0-0 (open3d needs it)"
    (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null; })
  else
    say "open3d needs the system library libusb-1.0 (Debian: apt-get install libusb-1.0-0); not found"; exit 3
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

# 1. what graspnetAPI's graspnet_eval / utils / dexnet modules import.
#    Plain installs (their own requirements are small and current):
PLAIN=(numpy scipy "transforms3d>=0.4" trimesh tqdm pillow matplotlib scikit-image scikit-learn
       cvxopt opencv-python-headless ipython "cython>=3" setuptools wheel plotly dash)
#    --no-deps installs: open3d (its requirements add ipywidgets, nbformat,
#    pandas, ... that the evaluator never touches; `import open3d` does need
#    plotly and dash, installed above) and autolab_core (pulls opencv-python,
#    which would clash with the headless build, and more); plus the few
#    modules they import at `import`.
NODEPS=(open3d==0.20.0 autolab_core==1.1.1 configargparse addict pyquaternion ruamel.yaml
        ruamel.yaml.clib setproctitle joblib colorlog pyyaml multiprocess dill)
if [ ! -f "$VENV/.stamp-deps" ]; then
  say "installing: ${PLAIN[*]}"
  "${PIP[@]}" "${PLAIN[@]}"
  say "installing --no-deps: ${NODEPS[*]}"
  "${PIP[@]}" --no-deps "${NODEPS[@]}"
  # grasp_nms builds a Cython/C++ extension against the installed numpy
  say "building grasp-nms==1.0.2"
  "${PIP[@]}" --no-build-isolation --no-deps grasp-nms==1.0.2
  touch "$VENV/.stamp-deps"
else
  say "dependencies already installed (rm $VENV/.stamp-deps to redo)"
fi

# 2. the graspnetAPI sdist, unpacked (not installed: its pins are never resolved)
if [ ! -f "$SRC/.stamp-unpacked" ]; then
  mkdir -p "$SRC"
  say "downloading graspnetapi==$GN_VERSION (sdist, --no-deps)"
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      "graspnetapi==$GN_VERSION" -d "$SRC/dl"
  tar -xzf "$SRC"/dl/graspnet[Aa][Pp][Ii]-"$GN_VERSION".tar.gz -C "$SRC"
  touch "$SRC/.stamp-unpacked"
else
  say "graspnetAPI $GN_VERSION already unpacked in $SRC"
fi
GN="$SRC/graspnetAPI-$GN_VERSION"

# 3. patch only what current NumPy breaks: the aliases np.int / np.float /
#    np.bool / np.object / np.complex / np.str removed in NumPy 1.24.
if [ ! -f "$GN/.stamp-patched" ]; then
  for alias in int float bool object complex str; do
    # np.int but not np.int32 / np.integer / np.int_ ...
    files=$(grep -rlE "np\.${alias}([^0-9A-Za-z_]|$)" "$GN/graspnetAPI" --include='*.py' || true)
    for f in $files; do
      grep -nE "np\.${alias}([^0-9A-Za-z_]|$)" "$f" | while IFS= read -r line; do
        say "patch ${f#$GN/}:${line%%:*}: np.${alias} -> ${alias}"
      done
      sed -i -E "s/np\.${alias}([^0-9A-Za-z_]|$)/${alias}\1/g" "$f"
    done
  done
  touch "$GN/.stamp-patched"
else
  say "NumPy alias patches already applied"
fi

# 4. smoke test: the evaluator's modules import
PYTHONPATH="$GN" "$VENV/bin/python" - <<'EOF'
import numpy, open3d, grasp_nms
from graspnetAPI.graspnet_eval import GraspNetEval
from graspnetAPI.utils.eval_utils import eval_grasp, collision_detection, get_grasp_score
print("[graspnetapi-venv] ok: graspnetAPI imports with numpy", numpy.__version__, "open3d", open3d.__version__)
EOF
say "graspnetAPI: PYTHONPATH=$GN $VENV/bin/python"
