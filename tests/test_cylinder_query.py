"""cylinder_query against a NumPy oracle."""
import numpy as np
import pytest
import torch

from pcgrasp import ops
from conftest import cloud, ragged_lengths, requires_cuda


def rotations(rng, B, M):
    q, _ = np.linalg.qr(rng.normal(size=(B * M, 3, 3)))
    return torch.as_tensor(q.reshape(B, M, 3, 3))


def cyl_oracle(q, R, p, r, hmin, hmax, k, mq, n, order):
    M = q.shape[0]
    idx = np.full((M, k), -1)
    count = np.zeros(M, dtype=np.int64)
    for m in range(mq):
        loc = (p[:n] - q[m]) @ R[m]  # rows: R^T (p - c)
        rad = loc[:, 1] ** 2 + loc[:, 2] ** 2
        inside = np.nonzero((rad < r * r) & (loc[:, 0] > hmin) & (loc[:, 0] < hmax))[0]
        if order == "nearest":
            inside = inside[np.lexsort((inside, rad[inside]))]
        inside = inside[:k]
        idx[m, : len(inside)] = inside
        count[m] = len(inside)
    return idx, count


@pytest.mark.parametrize("order", ["first", "nearest"])
@pytest.mark.parametrize("k,r,hmin,hmax", [(16, 0.1, -0.02, 0.04), (64, 0.2, -0.1, 0.1), (5, 0.05, 0.0, 0.3),
                                           (100, 0.3, -0.3, 0.3)])
def test_cylinder_query_matches_oracle(rng, order, k, r, hmin, hmax):
    B, M, N = 3, 40, 400
    pts = cloud(rng, B, N, 3, torch.float64, "clustered")
    q = pts[:, :M] + 0.01
    R = rotations(rng, B, M)
    ql, pl = ragged_lengths(B, M, rng), ragged_lengths(B, N, rng)
    idx, count = ops.cylinder_query(q, R, pts, r, hmin, hmax, k, ql, pl, order=order)
    for b in range(B):
        wi, wc = cyl_oracle(q[b].numpy(), R[b].numpy(), pts[b].numpy(), r, hmin, hmax, k, int(ql[b]), int(pl[b]), order)
        np.testing.assert_array_equal(idx[b].numpy(), wi)
        np.testing.assert_array_equal(count[b].numpy(), wc)


def test_cylinder_query_pad_first_and_axis(rng):
    # identity rotation: the axis is x. Points on the axis inside (hmin, hmax) only.
    pts = torch.tensor([[[0.05, 0, 0], [0.5, 0, 0], [-0.05, 0, 0], [0.02, 0.02, 0], [0.02, 0.2, 0]]], dtype=torch.float64)
    q = torch.zeros(1, 2, 3, dtype=torch.float64)
    q[0, 1] = 10.0  # empty cylinder
    R = torch.eye(3, dtype=torch.float64).expand(1, 2, 3, 3)
    idx, count = ops.cylinder_query(q, R, pts, 0.05, -0.06, 0.1, 4, pad="first")
    assert idx[0, 0].tolist() == [0, 2, 3, 0] and count[0, 0] == 3
    assert (idx[0, 1] == -1).all() and count[0, 1] == 0


def test_cylinder_query_opcheck(rng):
    pts = cloud(rng, 2, 60, 3)
    q = pts[:, :5]
    R = rotations(rng, 2, 5).float()
    args = (q, R, pts, torch.tensor([5, 2]), torch.tensor([60, 30]), 0.2, -0.1, 0.1, 8, True)
    torch.library.opcheck(torch.ops.pcgrasp.cylinder_query.default, args)


@requires_cuda
@pytest.mark.parametrize("order", ["first", "nearest"])
@pytest.mark.parametrize("k", [16, 64, 100])
def test_cylinder_query_cuda_matches_cpu(rng, order, k):
    B, M, N = 4, 1024, 20000
    pts = cloud(rng, B, N, 3)
    q = pts[:, :M].contiguous()
    R = rotations(rng, B, M).float()
    c = ops.cylinder_query(q, R, pts, 0.05, -0.02, 0.04, k, order=order)
    g = ops.cylinder_query(q.cuda(), R.cuda(), pts.cuda(), 0.05, -0.02, 0.04, k, order=order)
    assert torch.equal(c[0], g[0].cpu()) and torch.equal(c[1], g[1].cpu())


def general_matrices(rng, B, M):
    """Rotations scaled, sheared, nearly singular and exactly singular: the
    inside test q = R^T (p - c) is defined for any R and both devices must
    agree with the oracle, not only for orthonormal R."""
    R = rotations(rng, B, M).numpy().copy()
    scale = rng.choice([0.2, 0.5, 1.0, 3.0], size=(B, M, 1, 3))
    R = R * scale
    R[:, 0::4, 0, 1] += 0.8  # shear
    R[:, 1::4, :, 2] = R[:, 1::4, :, 1] * (1 + 1e-9)  # nearly singular
    R[:, 2::4, :, 2] = 0  # singular: an unbounded slab
    return torch.as_tensor(R)


@pytest.mark.parametrize("order", ["first", "nearest"])
def test_cylinder_query_any_matrix_matches_oracle(rng, order):
    B, M, N, k = 2, 40, 600, 600
    pts = cloud(rng, B, N, 3, torch.float64, "clustered")
    q = pts[:, :M] + 0.01
    R = general_matrices(rng, B, M)
    r, hmin, hmax = 0.1, -0.05, 0.08
    idx, count = ops.cylinder_query(q, R, pts, r, hmin, hmax, k, order=order)
    for b in range(B):
        wi, wc = cyl_oracle(q[b].numpy(), R[b].numpy(), pts[b].numpy(), r, hmin, hmax, k, M, N, order)
        np.testing.assert_array_equal(count[b].numpy(), wc)
        np.testing.assert_array_equal(idx[b].numpy(), wi)
    assert (count > 0).any()


@requires_cuda
@pytest.mark.parametrize("order", ["first", "nearest"])
def test_cylinder_query_cuda_any_matrix_matches_cpu(rng, order):
    B, M, N = 2, 256, 5000
    pts = cloud(rng, B, N, 3, torch.float64, "clustered")
    q = pts[:, :M] + 0.01
    R = general_matrices(rng, B, M)
    c = ops.cylinder_query(q, R, pts, 0.1, -0.05, 0.08, 32, order=order)
    g = ops.cylinder_query(q.cuda(), R.cuda(), pts.cuda(), 0.1, -0.05, 0.08, 32, order=order)
    assert torch.equal(c[0], g[0].cpu()) and torch.equal(c[1], g[1].cpu())


@requires_cuda
def test_neighbour_queries_cuda_more_than_65535_clouds():
    # clouds used to go in grid.y (limit 65535); now launched in chunks
    B = 70000
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(B, 8, 3, generator=g)
    q = pts[:, :2].contiguous()
    R = torch.eye(3).expand(B, 2, 3, 3).contiguous()
    for fn in (lambda p, x, r: ops.knn(x, p, 3),
               lambda p, x, r: ops.ball_query(x, p, 0.5, 4),
               lambda p, x, r: ops.cylinder_query(x, r, p, 0.5, -0.5, 0.5, 4)):
        want = fn(pts, q, R)
        got = fn(pts.cuda(), q.cuda(), R.cuda())
        for w, o in zip(want, got):
            assert torch.equal(w, o.cpu())
