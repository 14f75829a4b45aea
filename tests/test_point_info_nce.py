"""Tiled PointInfoNCE (+ false-negative mask) against the naive M x M version."""
import numpy as np
import pytest
import torch

from pcgrasp import ops
from conftest import DEVICES, cloud, requires_cuda


def naive_info_nce(a, b, xyz=None, tau=0.07, gamma=None, valid=None, reduction="mean"):
    """The oracle: full logits matrix, plain PyTorch (differentiable)."""
    B, M, _ = a.shape
    S = a @ b.transpose(1, 2) / tau
    keep = torch.ones(B, M, M, dtype=torch.bool)
    if gamma is not None:
        keep &= torch.cdist(xyz.double(), xyz.double()) >= gamma
    if valid is not None:
        keep &= valid[:, None, :]
    keep |= torch.eye(M, dtype=torch.bool)
    S = S.masked_fill(~keep, float("-inf"))
    rows = torch.logsumexp(S, -1) - torch.diagonal(S, dim1=1, dim2=2)
    if valid is not None:
        rows = torch.where(valid, rows, torch.zeros_like(rows))
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / (valid.sum() if valid is not None else B * M)


def fnm_oracle(xyz, gamma):
    d = np.sqrt(((xyz[:, :, None] - xyz[:, None]) ** 2).sum(-1))
    return (d >= gamma) | np.eye(xyz.shape[1], dtype=bool)


@pytest.mark.parametrize("kind", ["uniform", "lattice", "duplicates"])
def test_false_negative_mask_matches_oracle(rng, kind):
    xyz = cloud(rng, 3, 60, 3, torch.float64, kind)
    for gamma in (0.0, 0.2, 1.0, 2.0):  # lattice: exact distance 1 and 2 ties count as >= gamma
        got = ops.false_negative_mask(xyz, gamma)
        np.testing.assert_array_equal(got.numpy(), fnm_oracle(xyz.numpy(), gamma))


@pytest.mark.parametrize("gamma", [None, 0.0, 0.15, 0.5])
@pytest.mark.parametrize("with_valid", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_info_nce_value_and_grads_match_naive(rng, gamma, with_valid, reduction):
    B, M, C = 2, 70, 8
    a = torch.randn(B, M, C, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    b = a + 0.3 * torch.randn(B, M, C, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    xyz = cloud(rng, B, M, 3, torch.float64)
    valid = torch.as_tensor(rng.random((B, M)) > 0.2) if with_valid else None
    a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    got = ops.point_info_nce(a1, b1, xyz, tau=0.1, gamma=gamma, valid=valid, reduction=reduction)
    want = naive_info_nce(a2, b2, xyz, tau=0.1, gamma=gamma, valid=valid, reduction=reduction)
    torch.testing.assert_close(got, want)
    w = torch.randn_like(got)
    (got * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(a1.grad, a2.grad)
    torch.testing.assert_close(b1.grad, b2.grad)


def test_info_nce_several_tiles(rng):
    # M larger than the 2048 tile: exercises the online log-sum-exp across tiles
    B, M, C = 1, 2600, 4
    g = torch.Generator().manual_seed(3)
    a = torch.randn(B, M, C, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(B, M, C, dtype=torch.float64, generator=g, requires_grad=True)
    xyz = cloud(rng, B, M, 3, torch.float64)
    got = ops.point_info_nce(a, b, xyz, tau=0.07, gamma=0.05, reduction="sum")
    ga, gb = torch.autograd.grad(got, (a, b))
    want = naive_info_nce(a, b, xyz, tau=0.07, gamma=0.05, reduction="sum")
    wa, wb = torch.autograd.grad(want, (a, b))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(ga, wa)
    torch.testing.assert_close(gb, wb)


def test_info_nce_gradcheck(rng):
    g = torch.Generator().manual_seed(4)
    a = torch.randn(2, 9, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(2, 9, 3, dtype=torch.float64, generator=g, requires_grad=True)
    xyz = cloud(rng, 2, 9, 3, torch.float64)
    valid = torch.ones(2, 9, dtype=torch.bool)
    valid[1, 7:] = False
    torch.autograd.gradcheck(lambda x, y: ops.point_info_nce(x, y, xyz, 0.5, 0.3, valid, "none"), (a, b))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_info_nce_half_types_computed_in_float32(dtype):
    g = torch.Generator().manual_seed(5)
    a = torch.nn.functional.normalize(torch.randn(2, 50, 16, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(2, 50, 16, generator=g), dim=-1)
    got = ops.point_info_nce(a.to(dtype), b.to(dtype))
    want = naive_info_nce(a.to(dtype).float(), b.to(dtype).float())
    torch.testing.assert_close(got.float(), want, rtol=1e-4, atol=1e-4)


def test_info_nce_large_m_runs_without_m_squared_memory():
    # M = 16384 would need 1 GiB for the float32 logits alone; the tiled op
    # holds one 2048 x 2048 tile at a time. Small C keeps CI fast.
    M, C = 16384, 8
    g = torch.Generator().manual_seed(6)
    a = torch.nn.functional.normalize(torch.randn(1, M, C, generator=g), dim=-1).requires_grad_()
    b = torch.nn.functional.normalize(torch.randn(1, M, C, generator=g), dim=-1).requires_grad_()
    loss = ops.point_info_nce(a, b, tau=0.07)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    # value check against a row-block evaluation of the same formula
    with torch.no_grad():
        rows = []
        for r in range(0, M, 4096):
            S = a[0, r:r + 4096] @ b[0].T / 0.07
            rows.append(torch.logsumexp(S, 1) - S[torch.arange(S.shape[0]), torch.arange(r, r + S.shape[0])])
        torch.testing.assert_close(loss, torch.cat(rows).mean(), rtol=1e-4, atol=1e-4)


def test_info_nce_masked_float32_backward_is_finite_reproduction():
    # The reported case: padding masks in float32. A dropped logit can exceed its
    # row's log-sum-exp by more than exp's range; exponentiating it before masking
    # gave inf * 0 = NaN in thousands of gradient entries.
    g = torch.Generator().manual_seed(11)
    a = torch.randn(2, 3000, 64, generator=g, requires_grad=True)
    b = torch.randn(2, 3000, 64, generator=g, requires_grad=True)
    xyz = torch.rand(2, 3000, 3, generator=g)
    valid = torch.rand(2, 3000, generator=g) > 0.1
    loss = ops.point_info_nce(a, b, xyz, 0.07, 0.05, valid)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    a64, b64 = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    want = ops.point_info_nce(a64, b64, xyz.double(), 0.07, 0.05, valid)
    want.backward()
    torch.testing.assert_close(loss.double(), want, rtol=1e-4, atol=0)
    for got, w in ((a.grad, a64.grad), (b.grad, b64.grad)):
        torch.testing.assert_close(got.double(), w, rtol=1e-4, atol=1e-4 * float(w.abs().max()))


@pytest.mark.parametrize("tau", [0.07, 0.01])
@pytest.mark.parametrize("gamma", [None, 0.3])
@pytest.mark.parametrize("impl", ["tiled", "naive"])
def test_info_nce_float32_masked_matches_float64(rng, tau, gamma, impl):
    # unnormalised features: logits of several thousand at tau = 0.01
    B, M, C = 2, 300, 32
    g = torch.Generator().manual_seed(12)
    a = torch.randn(B, M, C, generator=g) * 3
    b = torch.randn(B, M, C, generator=g) * 3
    b[:, : M // 2] = a[:, : M // 2] + 0.1 * b[:, : M // 2]  # some easy positives too
    xyz = cloud(rng, B, M, 3, torch.float32)
    valid = torch.as_tensor(rng.random((B, M)) > 0.3)
    valid[1, :] = False  # a fully padded cloud
    fn = ops.point_info_nce if impl == "tiled" else naive_info_nce
    out = {}
    for dt in (torch.float32, torch.float64):
        x, y = a.to(dt).clone().requires_grad_(), b.to(dt).clone().requires_grad_()
        loss = fn(x, y, xyz.to(dt), tau=tau, gamma=gamma, valid=valid)
        loss.backward()
        out[dt] = (loss, x.grad, y.grad)
    l32, ga32, gb32 = out[torch.float32]
    assert torch.isfinite(l32) and torch.isfinite(ga32).all() and torch.isfinite(gb32).all()
    l64, ga64, gb64 = out[torch.float64]
    torch.testing.assert_close(l32.double(), l64, rtol=1e-4, atol=0)
    for got, w in ((ga32, ga64), (gb32, gb64)):
        torch.testing.assert_close(got.double(), w, rtol=1e-4, atol=1e-4 * float(w.abs().max()))
        assert not got[1].any()  # padded rows and columns get no gradient


def test_info_nce_opcheck(rng):
    g = torch.Generator().manual_seed(7)
    a = torch.randn(2, 12, 4, generator=g, requires_grad=True)
    b = torch.randn(2, 12, 4, generator=g, requires_grad=True)
    xyz = cloud(rng, 2, 12, 3)
    torch.library.opcheck(torch.ops.pcgrasp.point_info_nce.default, (a, b, xyz, None, 0.1, 0.2))
    torch.library.opcheck(torch.ops.pcgrasp.false_negative_mask.default, (xyz, 0.2))


@requires_cuda
def test_info_nce_and_mask_cuda_match_cpu(rng):
    g = torch.Generator().manual_seed(8)
    a = torch.randn(2, 3000, 64, generator=g)
    b = torch.randn(2, 3000, 64, generator=g)
    xyz = cloud(rng, 2, 3000, 3)
    valid = torch.rand(2, 3000, generator=g) > 0.1
    res = []
    for dev in ("cpu", "cuda"):
        x, y = a.to(dev).requires_grad_(), b.to(dev).requires_grad_()
        loss = ops.point_info_nce(x, y, xyz.to(dev), 0.07, 0.05, valid.to(dev))
        loss.backward()
        res.append((loss.detach().cpu(), x.grad.cpu(), y.grad.cpu()))
    for u, v in zip(*res):
        torch.testing.assert_close(u, v, rtol=1e-3, atol=1e-4)
    assert torch.equal(ops.false_negative_mask(xyz, 0.05), ops.false_negative_mask(xyz.cuda(), 0.05).cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_does_not_reach_into_the_loss(device):
    """Under bf16 autocast (the engine's GPU training) the loss and its gradient equal the
    float32 ones: the kernel's logit matmuls must not be autocast in the forward while the
    backward (run outside autocast) recomputes them in float32, or the saved log-sum-exp no
    longer matches the backward's logits."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 300, 32, generator=g).to(device).requires_grad_()
    b = torch.randn(2, 300, 32, generator=g).to(device).requires_grad_()
    xyz = torch.rand(2, 300, 3, generator=g).to(device)
    ref = ops.point_info_nce(a, b, xyz, tau=0.07, gamma=0.05)
    ref_grads = torch.autograd.grad(ref, (a, b))
    with torch.autocast(device, dtype=torch.bfloat16):
        assert torch.matmul(a, b.transpose(1, 2)).dtype == torch.bfloat16   # autocast is on here
        loss = ops.point_info_nce(a, b, xyz, tau=0.07, gamma=0.05)
    grads = torch.autograd.grad(loss, (a, b))
    assert loss.dtype == torch.float32 and torch.equal(loss, ref)
    for got, want in zip(grads, ref_grads):
        assert torch.equal(got, want)
