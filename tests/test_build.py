"""build_info and the error for CUDA tensors on a CPU-only build."""
import os
import re

import pytest
import torch

import pcgrasp
from pcgrasp import _ext, ops


def test_build_info_fields():
    info = pcgrasp.build_info()
    assert set(info) >= {"torch_version", "torch_runtime", "cuda_version", "cuda_arch_list", "cuda_built"}
    assert info["torch_runtime"] == torch.__version__
    assert info["cuda_built"] == torch._C._dispatch_has_kernel_for_dispatch_key("pcgrasp::knn", "CUDA")
    if info["cuda_built"]:
        assert info["cuda_version"] is not None


@pytest.mark.skipif(os.environ.get("PCGRASP_EXPECT_CUDA") != "1", reason="CI sets PCGRASP_EXPECT_CUDA=1 when nvcc is present")
def test_cuda_kernels_were_built_when_expected():
    if os.environ.get("PCGRASP_LIBRARY"):
        pytest.skip("running against the CMake CPU build")
    info = pcgrasp.build_info()
    assert info["cuda_built"], f"nvcc is present but the CUDA kernels were not built: {info}"
    for op in ["farthest_point_sample", "knn", "ball_query", "gather_points", "three_interpolate"]:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pcgrasp::{op}", "CUDA"), op


def test_cpu_kernels_registered_for_every_op():
    for op in ["farthest_point_sample", "knn", "ball_query", "gather_points", "gather_points_backward",
               "three_interpolate", "three_interpolate_backward"]:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pcgrasp::{op}", "CPU"), op


def test_cuda_tensor_on_cpu_only_build_says_how_to_rebuild(monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorMode

    monkeypatch.setattr(_ext, "_has_cuda_kernels", lambda: False)
    try:
        with FakeTensorMode():
            pts = torch.empty(2, 10, 3, device="cuda")
    except Exception as e:  # pragma: no cover - torch without fake CUDA support
        pytest.skip(f"cannot make a fake CUDA tensor here: {e}")
    with pytest.raises(RuntimeError, match="built without CUDA.*--no-build-isolation"):
        ops.farthest_point_sample(pts, 4)


CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")


def _host_functions_with_guards(text):
    """(name, prologue) of every host function in a .cu file that sets a CUDAGuard: the
    function's text from its signature up to the guard."""
    out = []
    for m in re.finditer(r"CUDAGuard\s+\w+\(", text):
        start = max(text.rfind("\n}", 0, m.start()), text.rfind("namespace", 0, m.start()))
        prologue = text[start:m.start()]
        sig = re.search(r"(\w+)\s*\(", prologue)
        out.append((sig.group(1) if sig else "?", prologue))
    return out


def test_every_cuda_entry_checks_its_arguments_before_the_device_guard():
    """A CPU tensor among CUDA ones dispatches to the CUDA kernel; a CUDAGuard built from it
    first gives c10's internal 'expected a CUDA device' error instead of the checks' message
    naming the argument. So every guard comes after the checks, and nothing touches the
    inputs (to_compute, allocations, launches) before it."""
    seen = 0
    for folder in sorted(os.listdir(CSRC)):
        for name in sorted(os.listdir(os.path.join(CSRC, folder))) if os.path.isdir(os.path.join(CSRC, folder)) else []:
            if not name.endswith(".cu"):
                continue
            with open(os.path.join(CSRC, folder, name)) as f:
                text = f.read()
            for func, prologue in _host_functions_with_guards(text):
                seen += 1
                where = f"{folder}/{name}: {func}"
                assert re.search(r"check", prologue), f"{where}: the CUDAGuard comes before any argument check"
                for bad in ("to_compute(", "at::empty", "at::full", "<<<", "data_ptr"):
                    assert bad not in prologue, f"{where}: {bad} before the CUDAGuard"
    assert seen >= 12  # one per CUDA entry point
