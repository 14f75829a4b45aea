"""gather_points / scatter_add_points against plain PyTorch indexing."""
import pytest
import torch

from pcgrasp import ops
from conftest import ALL_DTYPES, requires_cuda


def gather_oracle(features, idx):
    B, N, C = features.shape
    flat = idx.reshape(B, -1)
    out = torch.zeros(B, flat.shape[1], C, dtype=features.dtype)
    for b in range(B):
        for l in range(flat.shape[1]):
            if flat[b, l] >= 0:
                out[b, l] = features[b, flat[b, l]]
    return out.reshape(*idx.shape, C)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_gather_matches_oracle_with_padding_and_repeats(dtype):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, 11, 5, generator=g).to(dtype)
    idx = torch.randint(-1, 11, (3, 4, 6), generator=g)
    idx[1, 0] = 2  # repeated index
    out = ops.gather_points(features, idx)
    assert out.shape == (3, 4, 6, 5) and out.dtype == dtype
    torch.testing.assert_close(out, gather_oracle(features, idx), rtol=0, atol=0)


def test_gather_backward_accumulates_repeats():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(2, 6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    idx = torch.tensor([[0, 0, 0, 5, -1], [1, 2, 1, -1, -1]])
    w = torch.randn(2, 5, 4, dtype=torch.float64, generator=g)
    (ops.gather_points(features, idx) * w).sum().backward()
    want = torch.zeros(2, 6, 4, dtype=torch.float64)
    for b in range(2):
        for l in range(5):
            if idx[b, l] >= 0:
                want[b, idx[b, l]] += w[b, l]
    torch.testing.assert_close(features.grad, want)


def test_gather_gradcheck_and_scatter_gradgrad():
    g = torch.Generator().manual_seed(2)
    features = torch.randn(2, 7, 3, dtype=torch.float64, generator=g, requires_grad=True)
    idx = torch.randint(-1, 7, (2, 9), generator=g)
    torch.autograd.gradcheck(lambda f: ops.gather_points(f, idx), (features,))
    torch.autograd.gradgradcheck(lambda f: ops.gather_points(f, idx), (features,))
    vals = torch.randn(2, 9, 3, dtype=torch.float64, generator=g, requires_grad=True)
    torch.autograd.gradcheck(lambda v: ops.scatter_add_points(v, idx, 7), (vals,))


def test_gather_out_of_range_raises():
    with pytest.raises(IndexError, match="idx"):
        ops.gather_points(torch.rand(2, 5, 3), torch.tensor([[0, 5], [1, 1]]))
    with pytest.raises(IndexError, match="idx"):
        ops.gather_points(torch.rand(2, 5, 3), torch.tensor([[0, -2], [1, 1]]))
    # the C++ kernel checks too when called directly
    with pytest.raises(RuntimeError, match="idx"):
        torch.ops.pcgrasp.gather_points(torch.rand(2, 5, 3), torch.tensor([[0, 7], [1, 1]]))


def test_gather_opcheck():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 8, 4, generator=g, requires_grad=True)
    idx = torch.randint(-1, 8, (2, 10), generator=g)
    torch.library.opcheck(torch.ops.pcgrasp.gather_points.default, (features, idx))
    grad = torch.randn(2, 10, 4, generator=g, requires_grad=True)
    torch.library.opcheck(torch.ops.pcgrasp.gather_points_backward.default, (grad, idx, 8))


@requires_cuda
def test_gather_cuda_matches_cpu():
    g = torch.Generator().manual_seed(4)
    features = torch.randn(4, 1000, 64, generator=g, requires_grad=True)
    idx = torch.randint(-1, 1000, (4, 512, 16), generator=g)
    w = torch.randn(4, 512, 16, 64, generator=g)
    (ops.gather_points(features, idx) * w).sum().backward()
    fc = features.detach().cuda().requires_grad_()
    out = ops.gather_points(fc, idx.cuda())
    (out * w.cuda()).sum().backward()
    torch.testing.assert_close(out.detach().cpu(), gather_oracle(features.detach(), idx))
    torch.testing.assert_close(fc.grad.cpu(), features.grad, rtol=1e-5, atol=1e-4)


@requires_cuda
def test_backward_ops_reject_grad_on_another_device():
    # the raw backward ops dispatch on any CUDA argument; a CPU grad must raise,
    # not be read as device memory
    idx = torch.tensor([[0, 2, -1]], device="cuda")
    with pytest.raises(RuntimeError, match="same device"):
        torch.ops.pcgrasp.gather_points_backward(torch.rand(1, 3, 4), idx, 5)
    f = torch.rand(1, 5, 4, device="cuda")
    i3 = torch.tensor([[[0, 1, 2]]], device="cuda")
    w = torch.rand(1, 1, 3, device="cuda")
    with pytest.raises(RuntimeError, match="same device"):
        torch.ops.pcgrasp.three_interpolate_backward(torch.rand(1, 1, 4), f, i3, w)


def _gather_and_interpolate_backward(device):
    x = torch.randn(1, 6, 3, device=device, requires_grad=True)
    idx = torch.tensor([[0, 2, 2, 5]], device=device)
    ops.gather_points(x, idx).sum().backward()
    w = torch.full((1, 2, 3), 1 / 3, device=device)
    ops.three_interpolate(x, torch.tensor([[[0, 1, 1], [4, 5, 0]]], device=device), w).sum().backward()
    return x.grad


def test_cpu_backward_is_deterministic_under_torch_deterministic_mode():
    """The CPU scatter-add sums in a fixed order: torch's deterministic mode accepts it, and two
    runs agree bit for bit."""
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(0)
        a = _gather_and_interpolate_backward("cpu")
        torch.manual_seed(0)
        assert torch.equal(a, _gather_and_interpolate_backward("cpu"))
    finally:
        torch.use_deterministic_algorithms(old)


@requires_cuda
def test_cuda_backward_alerts_under_torch_deterministic_mode():
    """The CUDA scatter-add (gather / three_interpolate backward) adds with atomics, so its last
    bits vary from run to run: torch's deterministic mode refuses it instead of pretending."""
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(RuntimeError, match="does not have a deterministic implementation"):
            _gather_and_interpolate_backward("cuda")
    finally:
        torch.use_deterministic_algorithms(old)
    assert _gather_and_interpolate_backward("cuda").shape == (1, 6, 3)
