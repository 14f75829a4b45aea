"""ball_query against a brute-force NumPy oracle written here."""
import numpy as np
import pytest
import torch

from pcgrasp import ops
from conftest import ALL_DTYPES, cloud, ragged_lengths, requires_cuda


def ball_oracle(q, p, r, k, mq, n, order):
    M = q.shape[0]
    idx = np.full((M, k), -1, dtype=np.int64)
    dist = np.full((M, k), np.inf)
    count = np.zeros(M, dtype=np.int64)
    for m in range(mq):
        d = ((p[:n] - q[m]) ** 2).sum(-1)
        inside = np.nonzero(d < r * r)[0]  # ascending index order
        if order == "nearest":
            inside = inside[np.lexsort((inside, d[inside]))]
        inside = inside[:k]
        idx[m, : len(inside)] = inside
        dist[m, : len(inside)] = d[inside]
        count[m] = len(inside)
    return idx, dist, count


def run_and_check(query, points, r, k, qlens, lens, order):
    idx, dist, count = ops.ball_query(query, points, r, k, query_lengths=qlens, lengths=lens, order=order)
    Q, P = query.double().numpy(), points.double().numpy()
    for b in range(query.shape[0]):
        wi, wd, wc = ball_oracle(Q[b], P[b], r, k, int(qlens[b]), int(lens[b]), order)
        np.testing.assert_array_equal(idx[b].numpy(), wi, err_msg=f"cloud {b}")
        np.testing.assert_array_equal(count[b].numpy(), wc)
        np.testing.assert_allclose(dist[b].double().numpy(), wd, rtol=1e-6)
    return idx, dist, count


@pytest.mark.parametrize("order", ["nearest", "first"])
@pytest.mark.parametrize("kind", ["uniform", "clustered", "duplicates", "lattice", "planar"])
@pytest.mark.parametrize("r,k", [(0.1, 8), (0.3, 16), (1.0, 64), (1.5, 5)])
def test_ball_query_matches_oracle(rng, order, kind, r, k):
    B, M, N = 3, 60, 300
    points = cloud(rng, B, N, 3, torch.float64, kind)
    query = cloud(rng, B, M, 3, torch.float64, kind) * 1.2 - 0.1
    qlens, lens = ragged_lengths(B, M, rng), ragged_lengths(B, N, rng)
    run_and_check(query, points, r, k, qlens, lens, order)


@pytest.mark.parametrize("order", ["nearest", "first"])
def test_ball_query_boundary_is_exclusive(order):
    # lattice points at distance exactly 1 from the query are outside r = 1
    pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0.5, 0, 0], [0, 0, 0.999]]], dtype=torch.float64)
    pts = pts.repeat(1, 20, 1)  # 100 points: grid path, many duplicates
    q = torch.zeros(1, 1, 3, dtype=torch.float64)
    run_and_check(q, pts, 1.0, 100, torch.tensor([1]), torch.tensor([100]), order)


@pytest.mark.parametrize("D", [1, 2, 6])
def test_ball_query_other_dims(rng, D):
    points, query = cloud(rng, 2, 50, D, torch.float64), cloud(rng, 2, 10, D, torch.float64)
    run_and_check(query, points, 0.4, 7, torch.tensor([10, 3]), torch.tensor([50, 0]), "nearest")
    run_and_check(query, points, 0.4, 7, torch.tensor([10, 3]), torch.tensor([50, 20]), "first")


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_ball_query_dtypes_counts(rng, dtype):
    points, query = cloud(rng, 2, 200, 3, dtype), cloud(rng, 2, 30, 3, dtype)
    idx, dist, count = ops.ball_query(query, points, 0.25, 10)
    assert dist.dtype == dtype
    P, Q = points.float().numpy(), query.float().numpy()
    for b in range(2):
        valid = idx[b] >= 0
        assert (valid.sum(-1) == count[b]).all()
        d = ((P[b][idx[b].clamp(min=0)] - Q[b][:, None]) ** 2).sum(-1)
        assert (d[valid.numpy()] < 0.25**2 * (1 + 1e-3)).all()


def test_ball_query_pad_first(rng):
    points, query = cloud(rng, 2, 100, 3, torch.float64), cloud(rng, 2, 20, 3, torch.float64)
    query[0, 0] = 50.0  # an empty ball
    i0, d0, c0 = ops.ball_query(query, points, 0.2, 12, order="first")
    i1, d1, c1 = ops.ball_query(query, points, 0.2, 12, order="first", pad="first")
    assert torch.equal(c0, c1)
    for b in range(2):
        for m in range(20):
            c = int(c0[b, m])
            assert torch.equal(i1[b, m, :c], i0[b, m, :c])
            if c == 0:
                assert (i1[b, m] == -1).all()
            else:
                assert (i1[b, m, c:] == i0[b, m, 0]).all()
                assert (d1[b, m, c:] == d0[b, m, 0]).all()


def test_ball_query_zero_radius_and_k():
    p = torch.rand(2, 80, 3)
    idx, dist, count = ops.ball_query(p, p, 0.0, 4)
    assert (count == 0).all() and (idx == -1).all()
    idx, dist, count = ops.ball_query(p, p, 0.5, 0)
    assert idx.shape == (2, 80, 0) and (count == 0).all()


def test_ball_query_gradcheck(rng):
    points = cloud(rng, 1, 15, 3, torch.float64).requires_grad_()
    query = cloud(rng, 1, 4, 3, torch.float64).requires_grad_()

    def f(q, p):
        return ops.ball_query(q, p, 0.6, 4)[1].nan_to_num(posinf=0.0)

    torch.autograd.gradcheck(f, (query, points))


def test_ball_query_opcheck(rng):
    points, query = cloud(rng, 2, 70, 3), cloud(rng, 2, 9, 3).requires_grad_()
    args = (query, points, torch.tensor([9, 4]), torch.tensor([70, 30]), 0.3, 6, True)
    torch.library.opcheck(torch.ops.pcgrasp.ball_query.default, args)
    args = (query, points, torch.tensor([9, 4]), torch.tensor([70, 30]), 0.3, 6, False)
    torch.library.opcheck(torch.ops.pcgrasp.ball_query.default, args)


@requires_cuda
@pytest.mark.parametrize("order", ["nearest", "first"])
@pytest.mark.parametrize("r,k", [(0.04, 16), (0.1, 32), (0.2, 64), (0.3, 100)])
def test_ball_query_cuda_matches_cpu(rng, order, r, k):
    B, M, N = 3, 400, 3000
    points, query = cloud(rng, B, N, 3, torch.float32), cloud(rng, B, M, 3, torch.float32)
    qlens, lens = ragged_lengths(B, M, rng), ragged_lengths(B, N, rng)
    c = ops.ball_query(query, points, r, k, qlens, lens, order=order)
    g = ops.ball_query(query.cuda(), points.cuda(), r, k, qlens.cuda(), lens.cuda(), order=order)
    assert torch.equal(c[0], g[0].cpu())
    assert torch.equal(c[2], g[2].cpu())
    torch.testing.assert_close(c[1], g[1].cpu())
