"""build_info and the error for CUDA tensors on a CPU-only build."""
import os

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
