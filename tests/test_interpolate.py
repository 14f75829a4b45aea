"""three_interpolate against plain PyTorch, and the three_nn -> weights chain."""
import pytest
import torch

from pcgrasp import ops
from conftest import ALL_DTYPES, requires_cuda


def interp_oracle(features, idx, weight):
    B, M, _ = idx.shape
    out = torch.zeros(B, M, features.shape[2], dtype=torch.float64)
    for b in range(B):
        for m in range(M):
            for j in range(3):
                if idx[b, m, j] >= 0:
                    out[b, m] += weight[b, m, j].double() * features[b, idx[b, m, j]].double()
    return out


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_three_interpolate_matches_oracle(dtype):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 9, 6, generator=g).to(dtype)
    idx = torch.randint(-1, 9, (2, 13, 3), generator=g)
    weight = torch.rand(2, 13, 3, generator=g).to(dtype)
    out = ops.three_interpolate(features, idx, weight)
    assert out.dtype == dtype and out.shape == (2, 13, 6)
    tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2}.get(dtype, 1e-6)
    torch.testing.assert_close(out.double(), interp_oracle(features, idx, weight), rtol=tol, atol=tol)


def test_three_interpolate_gradcheck():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(2, 6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    idx = torch.randint(-1, 6, (2, 5, 3), generator=g)
    idx[0, 0] = torch.tensor([2, 2, 2])  # repeated neighbour
    weight = torch.rand(2, 5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    torch.autograd.gradcheck(lambda f, w: ops.three_interpolate(f, idx, w), (features, weight))


def test_feature_propagation_chain_matches_dense_oracle():
    g = torch.Generator().manual_seed(2)
    coarse = torch.rand(2, 16, 3, dtype=torch.float64, generator=g)
    fine = torch.rand(2, 40, 3, dtype=torch.float64, generator=g)
    feats = torch.randn(2, 16, 5, dtype=torch.float64, generator=g)
    lens = torch.tensor([16, 2])  # cloud 1 has only two coarse points
    dist2, idx = ops.three_nn(fine, coarse, lengths=lens)
    out = ops.three_interpolate(feats, idx, ops.inverse_distance_weights(dist2))
    for b in range(2):
        n = int(lens[b])
        d = ((fine[b, :, None] - coarse[b, None, :n]) ** 2).sum(-1)
        dd, ii = d.sort(dim=-1, stable=True)
        dd, ii = dd[:, :3], ii[:, :3]
        w = 1.0 / (dd + 1e-8)
        w = w / w.sum(-1, keepdim=True)
        want = (w[..., None] * feats[b][ii]).sum(1)
        torch.testing.assert_close(out[b], want)


def test_three_interpolate_opcheck():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 8, 4, generator=g, requires_grad=True)
    idx = torch.randint(-1, 8, (2, 5, 3), generator=g)
    weight = torch.rand(2, 5, 3, generator=g, requires_grad=True)
    torch.library.opcheck(torch.ops.pcgrasp.three_interpolate.default, (features, idx, weight))


@requires_cuda
def test_three_interpolate_cuda_matches_cpu():
    g = torch.Generator().manual_seed(4)
    features = torch.randn(4, 500, 32, generator=g)
    idx = torch.randint(-1, 500, (4, 2000, 3), generator=g)
    weight = torch.rand(4, 2000, 3, generator=g)
    gout = torch.randn(4, 2000, 32, generator=g)
    res = []
    for dev in ("cpu", "cuda"):
        f = features.to(dev).requires_grad_()
        w = weight.to(dev).requires_grad_()
        out = ops.three_interpolate(f, idx.to(dev), w)
        out.backward(gout.to(dev))
        res.append((out.detach().cpu(), f.grad.cpu(), w.grad.cpu()))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
