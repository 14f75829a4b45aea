"""knn / three_nn against a brute-force NumPy oracle written here."""
import numpy as np
import pytest
import torch

from pcgrasp import ops
from conftest import ALL_DTYPES, cloud, ragged_lengths, requires_cuda


# output rounding of the returned dist2 in each dtype
RTOL = {torch.float16: 2e-3, torch.bfloat16: 8e-3, torch.float32: 1e-5, torch.float64: 1e-12}


def knn_oracle(q, p, k, mq, n):
    """Brute force in float64: sort by (distance, index), pad with -1/+inf."""
    M = q.shape[0]
    dist = np.full((M, k), np.inf)
    idx = np.full((M, k), -1, dtype=np.int64)
    for m in range(mq):
        d = ((p[:n] - q[m]) ** 2).sum(-1)
        order = np.lexsort((np.arange(n), d))[:k]
        dist[m, : len(order)] = d[order]
        idx[m, : len(order)] = order
    return dist, idx


def check_knn(query, points, k, qlens, lens, exact_idx):
    dist, idx = ops.knn(query, points, k, query_lengths=qlens, lengths=lens)
    assert dist.shape == idx.shape == (query.shape[0], query.shape[1], k)
    assert dist.dtype == query.dtype and idx.dtype == torch.int64
    Q, P = query.double().numpy(), points.double().numpy()
    for b in range(query.shape[0]):
        wd, wi = knn_oracle(Q[b], P[b], k, int(qlens[b]), int(lens[b]))
        if exact_idx:
            np.testing.assert_array_equal(idx[b].numpy(), wi, err_msg=f"cloud {b}")
        else:
            # float rounding may reorder near-ties: the returned set must have
            # the oracle's distances, and padding must match exactly
            np.testing.assert_array_equal(idx[b].numpy() < 0, wi < 0)
            got_d = np.where(idx[b].numpy() >= 0, ((P[b][np.maximum(idx[b].numpy(), 0)] - Q[b][:, None]) ** 2).sum(-1), np.inf)
            np.testing.assert_allclose(got_d, wd, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dist[b].double().numpy(), wd, rtol=RTOL[query.dtype], atol=1e-6)


@pytest.mark.parametrize("kind", ["uniform", "clustered", "planar", "duplicates", "lattice"])
@pytest.mark.parametrize("k", [1, 3, 8, 40])
def test_knn_grid_path_ragged(rng, kind, k):
    # D = 3 and N >= 64 takes the CPU grid path
    B, M, N = 4, 150, 400
    points = cloud(rng, B, N, 3, torch.float64, kind)
    query = cloud(rng, B, M, 3, torch.float64, kind) * 1.5 - 0.25  # some queries outside the bbox
    qlens, lens = ragged_lengths(B, M, rng), ragged_lengths(B, N, rng)
    lens[1] = 70
    check_knn(query, points, k, qlens, lens, exact_idx=True)


@pytest.mark.parametrize("D", [1, 2, 5, 8])
def test_knn_other_dims(rng, D):
    B, M, N = 3, 30, 80
    points = cloud(rng, B, N, D, torch.float64, "lattice")
    query = cloud(rng, B, M, D, torch.float64, "lattice")
    check_knn(query, points, 6, ragged_lengths(B, M, rng), ragged_lengths(B, N, rng), exact_idx=True)


@pytest.mark.parametrize("k", [65, 150, 500])
def test_knn_large_k_and_k_beyond_cloud(rng, k):
    B, M, N = 3, 20, 300
    points = cloud(rng, B, N, 3, torch.float64, "lattice")
    query = cloud(rng, B, M, 3, torch.float64, "uniform") * 3
    check_knn(query, points, k, torch.tensor([20, 5, 0]), torch.tensor([300, 40, 300]), exact_idx=True)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_knn_dtypes(rng, dtype):
    points = cloud(rng, 2, 300, 3, dtype)
    query = cloud(rng, 2, 50, 3, dtype)
    check_knn(query, points, 5, torch.tensor([50, 50]), torch.tensor([300, 300]), exact_idx=False)


def test_three_nn_pads_small_clouds(rng):
    points = cloud(rng, 3, 10, 3, torch.float64)
    query = cloud(rng, 3, 7, 3, torch.float64)
    lens = torch.tensor([10, 2, 0])
    dist, idx = ops.three_nn(query, points, lengths=lens)
    wd, wi = knn_oracle(query[1].numpy(), points[1].numpy(), 3, 7, 2)
    np.testing.assert_array_equal(idx[1].numpy(), wi)
    assert (idx[1, :, 2] == -1).all() and torch.isinf(dist[1, :, 2]).all()
    assert (idx[2] == -1).all()


def test_knn_gradcheck(rng):
    points = cloud(rng, 2, 12, 3, torch.float64).requires_grad_()
    query = cloud(rng, 2, 5, 3, torch.float64).requires_grad_()
    lens = torch.tensor([12, 2])  # cloud 1 has padding slots: they must get no gradient

    def f(q, p):
        return ops.knn(q, p, 3, lengths=lens)[0].nan_to_num(posinf=0.0)

    torch.autograd.gradcheck(f, (query, points))
    torch.autograd.gradgradcheck(f, (query, points))


def test_knn_grad_matches_autograd_oracle(rng):
    points = cloud(rng, 2, 40, 3, torch.float64).requires_grad_()
    query = cloud(rng, 2, 9, 3, torch.float64).requires_grad_()
    dist, idx = ops.knn(query, points, 4)
    w = torch.rand_like(dist)
    (dist * w).sum().backward()
    q2, p2 = query.detach().clone().requires_grad_(), points.detach().clone().requires_grad_()
    nbr = torch.stack([p2[b][idx[b]] for b in range(2)])  # plain PyTorch indexing
    ((((q2[:, :, None] - nbr) ** 2).sum(-1)) * w).sum().backward()
    torch.testing.assert_close(query.grad, q2.grad)
    torch.testing.assert_close(points.grad, p2.grad)


def test_knn_opcheck(rng):
    points = cloud(rng, 2, 70, 3)
    query = cloud(rng, 2, 9, 3).requires_grad_()
    args = (query, points, torch.tensor([9, 4]), torch.tensor([70, 30]), 5)
    torch.library.opcheck(torch.ops.pcgrasp.knn.default, args)


def test_knn_empty_shapes():
    d, i = ops.knn(torch.rand(2, 0, 3), torch.rand(2, 5, 3), 4)
    assert d.shape == (2, 0, 4)
    d, i = ops.knn(torch.rand(2, 3, 3), torch.rand(2, 0, 3), 4)
    assert (i == -1).all() and torch.isinf(d).all()
    d, i = ops.knn(torch.rand(2, 3, 3), torch.rand(2, 5, 3), 0)
    assert d.shape == (2, 3, 0)


@requires_cuda
@pytest.mark.parametrize("k", [1, 5, 16, 40, 64, 100])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_cuda_matches_cpu(rng, k, dtype):
    B, M, N = 4, 500, 2000
    points, query = cloud(rng, B, N, 3, dtype, "lattice"), cloud(rng, B, M, 3, dtype)
    qlens, lens = ragged_lengths(B, M, rng), ragged_lengths(B, N, rng)
    dc, ic = ops.knn(query, points, k, qlens, lens)
    dg, ig = ops.knn(query.cuda(), points.cuda(), k, qlens.cuda(), lens.cuda())
    assert torch.equal(ic, ig.cpu())  # same rounding and tie rule on both devices
    torch.testing.assert_close(dc, dg.cpu())
