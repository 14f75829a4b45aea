"""ops.host_to_device: host values on a device, equal to a plain torch.tensor copy."""
import pytest
import torch

from pcgrasp import ops
from conftest import requires_cuda


@pytest.mark.parametrize("dtype", [None, torch.int64, torch.int32, torch.float32, torch.float64])
def test_host_to_device_equals_a_plain_copy(rng, dtype):
    ints = rng.integers(-5, 2**30, size=17).tolist()  # fits every dtype tested
    floats = rng.standard_normal((6, 3))
    for values in (ints, [], floats, torch.as_tensor(floats)):
        got = ops.host_to_device(values, "cpu", dtype)
        if isinstance(values, torch.Tensor):
            want = values if dtype is None else values.to(dtype)
        else:
            want = torch.tensor(values, dtype=dtype)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want)
    # the int64 values a kernel map's counts take, beyond int32
    big = rng.integers(2**33, 2**40, size=5).tolist()
    assert ops.host_to_device(big, "cpu", torch.int64).tolist() == big


def test_host_to_device_never_returns_the_input():
    src = torch.arange(5)
    out = ops.host_to_device(src, torch.device("cpu"))
    src += 100
    assert out.tolist() == [0, 1, 2, 3, 4]


def test_host_to_device_refuses_a_device_tensor():
    with pytest.raises(ValueError, match="values must be on the CPU"):
        ops.host_to_device(torch.empty(3, device="meta"), "cpu")


@requires_cuda
def test_host_to_device_cuda_without_a_host_sync(rng):
    values = rng.integers(0, 2**40, size=1000).tolist()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = ops.host_to_device(values, "cuda", torch.int64)
        got = got * 2  # queued after the copy on the same stream
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert got.device.type == "cuda"
    assert got.cpu().tolist() == [2 * v for v in values]
