# The README's commands. Everything installs into ./.venv.
#   make demo   - the main job: Point-JEPA pretraining + grasp fine-tuning on the synthetic default
#   make demo-detection - the second main job: GraspContrast pretraining + GSNet-style detector fine-tuning, AP
#   make test   - build (CPU + CUDA when nvcc is found) and run the test suite
#   make docs   - the documentation site (docs/, mkdocs.yml) into site/, warnings are errors
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CUDA build of torch by default (CUDA 13.0 matches nvcc 13.0); it also runs
# on machines without a GPU. For a CPU-only setup use
#   make test TORCH_SPEC=torch==2.13.0 PCGRASP_CPU_ONLY=1
TORCH_SPEC ?= torch==2.13.0,!=2.13.0+cpu
export MAX_JOBS ?= 2

.PHONY: venv build test test-perturbed test-without-optional wheel-check demo demo-detection ops-demo bench sanitize gpu-check newest-torch clean docs

$(VENV)/.deps: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.deps

# Editable, so tests and scripts run against this checkout. pip builds in a
# fresh temporary folder each time, so rebuild only when a source changed.
BUILT := $(VENV)/.built
$(BUILT): $(VENV)/.deps setup.py $(shell find csrc -type f)
	$(PY) -m pip install -q --no-build-isolation -e .
	touch $@

build: $(BUILT)
	$(PY) -c "import pcgrasp; print('pcgrasp build:', pcgrasp.build_info())"

test: build
	$(PY) -m pytest -q tests

# the end-to-end (pipeline) tests, which assert learning outcomes, once more under settings that change
# floating-point rounding as another CPU would (tools/perturb-learning.py measures the full matrix)
test-perturbed: build
	OMP_NUM_THREADS=1 ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE PCGRASP_TEST_SEED=1 \
	  $(PY) -m pytest -q -m pipeline tests

# the suite as on a machine without the optional packages (the GPU image): they must skip, not error
test-without-optional: build
	$(PY) tools/without-optional.py -- $(PY) -m pytest -q -p no:cacheprovider tests

# sdist -> wheel -> fresh venv, non-editable -> smoke test from outside the checkout
wheel-check: build
	bash tools/wheel-check.sh $(PY)

demo: build
	$(PY) -m pcgrasp demo

# tiny scenes + labels, GraspContrast pretraining, the detector fine-tuned from scratch and from it, AP
demo-detection: build
	$(PY) -m pcgrasp demo detection

# the PointNet++-style ops walkthrough on synthetic object clouds
ops-demo: build
	$(PY) -m pcgrasp.ops_demo

bench: build
	$(PY) benchmarks/bench_ops.py

# CPU kernels built by CMake with ASan + UBSan, then the tests that exercise them
# (the end-to-end pipeline tests, marked `pipeline`, add no C++ coverage), on
# one OpenMP thread while `make test` uses the machine's: CI sees both counts.
sanitize: venv
	cmake -S . -B build/sanitize -DPCGRASP_SANITIZE=ON -DPython3_EXECUTABLE=$(abspath $(PY)) \
	  -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" >/dev/null
	cmake --build build/sanitize -j$(MAX_JOBS)
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  OMP_NUM_THREADS=1 PCGRASP_LIBRARY=$(abspath build/sanitize/libpcgrasp_ops.so) $(PY) -m pytest -q -m "not pipeline" tests

gpu-check:
	bash tools/gpu-check.sh

# The documentation site: MkDocs + Material, the API pages from the docstrings of pcgrasp.ops and
# pcgrasp.nn (mkdocstrings reads the source from this checkout statically: no build, no GPU, no
# pipeline runs; the venv is made if missing, without torch).
$(VENV)/.docs-deps: requirements-docs.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-docs.txt
	touch $@

docs: $(VENV)/.docs-deps
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

# graspnetAPI 1.2.11's evaluator against pcgrasp's on synthetic scenes, in a scratch venv
# (tools/graspnetapi-venv.sh, ~1 min once): `parity` is the full run that writes results/parity/ and
# benchmarks/results/*-evaluate-grasps.* (~20 min); `parity-quick` one scene, 64 frames, into /tmp (CI)
.PHONY: parity parity-quick
parity: build
	bash tools/graspnetapi-venv.sh
	$(PY) tools/graspnet_parity.py

parity-quick: build
	bash tools/graspnetapi-venv.sh
	$(PY) tools/graspnet_parity.py --quick --work /tmp/pcgrasp-parity-quick --out /tmp/pcgrasp-parity-quick/report

# the GPU check's dry run (no GPU needed; needs `make build` first): same steps and time plan, cheap stand-ins
.PHONY: gpu-check-dry
gpu-check-dry:
	PYTHON=$(PY) bash tools/gpu-check.sh --dry-run /tmp/gpu-dry

# compile every .cu against the newest torch on the package index (a second venv)
newest-torch:
	bash tools/check-newest-torch.sh

clean:
	rm -rf build .venv-newest *.egg-info pcgrasp/_C*.so pcgrasp/_build_config.py demo_out

# MinkowskiEngine 0.5.4 for the CPU, a reference for pcgrasp.nn (parity tests, fixtures,
# benchmarks); pcgrasp never needs it and CI never builds it. Needs libopenblas-dev; 5-13 min.
.PHONY: minkowski
minkowski: venv
	bash tools/install-minkowski.sh $(PY)
