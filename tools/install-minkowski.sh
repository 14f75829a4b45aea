#!/usr/bin/env bash
# Build MinkowskiEngine 0.5.4 for the CPU from its sdist into a Python 3.11 environment.
#
#   bash tools/install-minkowski.sh [PYTHON]        (default: .venv/bin/python; `make minkowski`)
#
# ME is only a reference for pcgrasp.nn (parity tests, fixtures, benchmarks); pcgrasp never needs it,
# and CI never builds it. Prefer a separate venv with the CPU torch (pip install torch==2.13.0):
# ME's CUDA build does not compile on CUDA 12/13.
# Needs Debian's libopenblas-dev (apt-get install libopenblas-dev), ~2.5 GB RAM and 5-13 min on 2 cores.
# What the sdist needs on today's toolchain (see /work/shared/ENVIRONMENT.md):
#  - SETUPTOOLS_USE_DISTUTILS=stdlib, or its metadata step fails;
#  - Python 3.10+ removed collections.Sequence: 5 files import it from collections;
#  - --cpu_only --blas=openblas go to setup.py itself (pip's config settings do not reach it);
#  - setup.py imports torch, so no build isolation.
set -euo pipefail
PY=${1:-${PYTHON:-.venv/bin/python}}
# the build cd's into a scratch folder: a relative interpreter path (.venv/bin/python) must be made absolute
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
VERSION=0.5.4
WORK=${ME_BUILD_DIR:-$(mktemp -d /tmp/minkowski-build.XXXXXX)}
export SETUPTOOLS_USE_DISTUTILS=stdlib
export MAX_JOBS=${MAX_JOBS:-2}

if "$PY" -c "import MinkowskiEngine" 2>/dev/null; then
  echo "MinkowskiEngine already importable with $PY"; exit 0
fi
if ! [ -e /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ] && ! ldconfig -p | grep -q libopenblas; then
  echo "libopenblas-dev is missing: sudo apt-get install -y libopenblas-dev" >&2; exit 1
fi
"$PY" -c "import torch, numpy" || { echo "$PY needs torch and numpy installed first" >&2; exit 1; }
"$PY" -m pip install -q ninja setuptools wheel

cd "$WORK"
"$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation "MinkowskiEngine==$VERSION" -d .
tar xzf MinkowskiEngine-$VERSION.tar.gz
cd MinkowskiEngine-$VERSION

# collections.Sequence -> collections.abc.Sequence (namedtuple stays in collections)
for f in $(grep -rl --include='*.py' -E '^from collections import .*Sequence' MinkowskiEngine); do
  sed -i -E 's/^from collections import Sequence, namedtuple$/from collections import namedtuple\nfrom collections.abc import Sequence/; s/^from collections import Sequence$/from collections.abc import Sequence/' "$f"
  echo "patched $f"
done
if grep -rn --include='*.py' -E '^from collections import .*Sequence' MinkowskiEngine; then
  echo "unpatched collections.Sequence imports remain" >&2; exit 1
fi

"$PY" setup.py bdist_wheel --cpu_only --blas=openblas
"$PY" -m pip install --no-deps --force-reinstall dist/*.whl  # named minkowskiengine-0.5.4-...
cd /
"$PY" -c "import MinkowskiEngine as ME; print('MinkowskiEngine', ME.__version__, 'installed')"
