"""correspondences / radius_pairs against brute force in NumPy."""
import numpy as np
import pytest
import torch

from pcgrasp import ops
from conftest import cloud, ragged_lengths, requires_cuda


def random_rigid(rng, B, dtype=torch.float64, integer=False):
    """Random rotations (or axis permutations with signs, exact) and translations."""
    T = np.zeros((B, 4, 4))
    for b in range(B):
        if integer:
            R = np.eye(3)[rng.permutation(3)] * rng.choice([-1, 1], size=3)[:, None]
            t = rng.integers(-3, 4, size=3)
        else:
            q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
            R = q * np.sign(np.linalg.det(q))
            t = rng.normal(size=3)
        T[b, :3, :3], T[b, :3, 3], T[b, 3, 3] = R, t, 1
    return torch.as_tensor(T, dtype=dtype)


def world(p, T):
    return p if T is None else p @ T[:3, :3].T + T[:3, 3]


def brute_d2(src, dst, ts, td, b, n, m):
    ws = world(src[b, :n], None if ts is None else ts[b])
    wd = world(dst[b, :m], None if td is None else td[b])
    return ((ws[:, None] - wd[None]) ** 2).sum(-1)


def corr_oracle(src, dst, r, sl, dl, ts, td):
    B, N = src.shape[:2]
    idx = np.full((B, N), -1)
    dist = np.full((B, N), np.inf)
    for b in range(B):
        n, m = int(sl[b]), int(dl[b])
        if n == 0 or m == 0:
            continue
        d = brute_d2(src, dst, ts, td, b, n, m)
        for i in range(n):
            inside = np.nonzero(d[i] < r * r)[0]
            if len(inside):
                j = inside[np.lexsort((inside, d[i, inside]))[0]]
                idx[b, i], dist[b, i] = j, d[i, j]
    return idx, dist


def pairs_oracle(src, dst, r, sl, dl, ts, td, cap=None):
    out = []
    for b in range(src.shape[0]):
        n, m = int(sl[b]), int(dl[b])
        if n == 0 or m == 0:
            continue
        d = brute_d2(src, dst, ts, td, b, n, m)
        for i in range(n):
            inside = np.nonzero(d[i] < r * r)[0]
            if cap is not None:
                inside = np.sort(inside[np.lexsort((inside, d[i, inside]))][:cap])
            out += [(b, i, j) for j in inside]
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def np_(t):
    return None if t is None else t.double().numpy()


@pytest.mark.parametrize("transforms", [False, True])
@pytest.mark.parametrize("kind", ["uniform", "clustered", "duplicates"])
def test_correspondences_matches_oracle(rng, transforms, kind):
    B, N, M, r = 4, 300, 250, 0.08
    src = cloud(rng, B, N, 3, torch.float64, kind)
    dst = cloud(rng, B, M, 3, torch.float64, kind)
    sl, dl = ragged_lengths(B, N, rng), ragged_lengths(B, M, rng)
    ts = td = None
    if transforms:  # dst is src seen from another pose: map both to the world
        ts, td = random_rigid(rng, B), random_rigid(rng, B)
    idx, dist = ops.correspondences(src, dst, r, sl, dl, ts, td)
    wi, wd = corr_oracle(src.numpy(), dst.numpy(), r, sl, dl, np_(ts), np_(td))
    np.testing.assert_array_equal(idx.numpy(), wi)
    np.testing.assert_allclose(dist.numpy(), wd, rtol=1e-9, atol=1e-12)


def test_correspondences_exact_ties_lower_index(rng):
    # integer lattice + exact (signed permutation) transforms: many exact ties
    B, N = 3, 200
    src = cloud(rng, B, N, 3, torch.float64, "lattice")
    dst = cloud(rng, B, N, 3, torch.float64, "lattice")
    ts, td = random_rigid(rng, B, integer=True), random_rigid(rng, B, integer=True)
    sl = dl = torch.full((B,), N)
    for r in (1.0, 1.5, 2.0):  # distance exactly r is outside
        idx, dist = ops.correspondences(src, dst, r, sl, dl, ts, td)
        wi, wd = corr_oracle(src.numpy(), dst.numpy(), r, sl, dl, np_(ts), np_(td))
        np.testing.assert_array_equal(idx.numpy(), wi)


def test_correspondences_identity_transform_equals_none(rng):
    src, dst = cloud(rng, 2, 100, 3), cloud(rng, 2, 120, 3)
    eye = torch.eye(4).expand(2, 4, 4)
    a = ops.correspondences(src, dst, 0.1)
    b = ops.correspondences(src, dst, 0.1, src_transform=eye, dst_transform=eye)
    assert torch.equal(a[0], b[0])


def test_correspondences_empty_views_and_zero_radius(rng):
    src, dst = cloud(rng, 2, 50, 3), cloud(rng, 2, 60, 3)
    idx, dist = ops.correspondences(src, dst, 0.2, dst_lengths=torch.tensor([0, 60]))
    assert (idx[0] == -1).all() and torch.isinf(dist[0]).all() and (idx[1] >= 0).any()
    idx, _ = ops.correspondences(src, dst, 0.0)
    assert (idx == -1).all()
    idx, _ = ops.correspondences(src[:, :0], dst, 0.2)
    assert idx.shape == (2, 0)


@pytest.mark.parametrize("cap", [None, 1, 3, 10])
@pytest.mark.parametrize("transforms", [False, True])
def test_radius_pairs_matches_oracle(rng, cap, transforms):
    B, N, M, r = 3, 200, 220, 0.12
    src, dst = cloud(rng, B, N, 3, torch.float64, "clustered"), cloud(rng, B, M, 3, torch.float64, "clustered")
    sl, dl = ragged_lengths(B, N, rng), ragged_lengths(B, M, rng)
    ts, td = (random_rigid(rng, B), random_rigid(rng, B)) if transforms else (None, None)
    pairs = ops.radius_pairs(src, dst, r, sl, dl, ts, td, max_pairs=cap)
    want = pairs_oracle(src.numpy(), dst.numpy(), r, sl, dl, np_(ts), np_(td), cap)
    np.testing.assert_array_equal(pairs.numpy(), want)


def test_radius_pairs_lattice_ties(rng):
    src = cloud(rng, 2, 150, 3, torch.float64, "lattice")
    dst = cloud(rng, 2, 150, 3, torch.float64, "lattice")
    full = torch.full((2,), 150)
    for cap in (None, 2):
        pairs = ops.radius_pairs(src, dst, 1.5, max_pairs=cap)
        np.testing.assert_array_equal(pairs.numpy(), pairs_oracle(src.numpy(), dst.numpy(), 1.5, full, full, None, None, cap))


def test_correspondences_opcheck(rng):
    src, dst = cloud(rng, 2, 40, 3), cloud(rng, 2, 50, 3)
    args = (src, dst, torch.tensor([40, 10]), torch.tensor([50, 0]), random_rigid(rng, 2, torch.float32), None, 0.2)
    torch.library.opcheck(torch.ops.pcgrasp.correspondences.default, args)


@requires_cuda
@pytest.mark.parametrize("cap", [None, 4])
def test_correspondences_and_pairs_cuda_match_cpu(rng, cap):
    B, N = 2, 20000
    src = cloud(rng, B, N, 3, torch.float32)
    dst = src + 0.002 * torch.randn(B, N, 3, generator=torch.Generator().manual_seed(0))
    ts, td = random_rigid(rng, B, torch.float32), random_rigid(rng, B, torch.float32)
    sl, dl = ragged_lengths(B, N, rng), ragged_lengths(B, N, rng)
    c = ops.correspondences(src, dst, 0.0075, sl, dl, ts, td)
    g = ops.correspondences(*(x.cuda() for x in (src, dst)), 0.0075, sl.cuda(), dl.cuda(), ts.cuda(), td.cuda())
    assert torch.equal(c[0], g[0].cpu())
    torch.testing.assert_close(c[1], g[1].cpu())
    pc = ops.radius_pairs(src, dst, 0.01, sl, dl, ts, td, max_pairs=cap)
    pg = ops.radius_pairs(src.cuda(), dst.cuda(), 0.01, sl.cuda(), dl.cuda(), ts.cuda(), td.cuda(), max_pairs=cap)
    assert torch.equal(pc, pg.cpu())


@requires_cuda
def test_correspondences_cuda_at_the_largest_clamped_cell(rng):
    # far beyond 2^20 cells on every axis, so every point clamps to the largest
    # cell, whose packed key is INT64_MAX: its key range must not overflow
    B, N, r = 2, 200, 0.01
    base = torch.full((B, 1, 3), 2.0e4, dtype=torch.float64)
    src = base + 0.02 * torch.as_tensor(rng.random((B, N, 3)))
    dst = src + 0.004 * torch.as_tensor(rng.standard_normal((B, N, 3)))
    sl, dl = torch.tensor([N, 150]), torch.tensor([N, N])
    wi, wd = corr_oracle(src.numpy(), dst.numpy(), r, sl.numpy(), dl.numpy(), None, None)
    gi, gd = ops.correspondences(src.cuda(), dst.cuda(), r, sl.cuda(), dl.cuda())
    assert (wi >= 0).sum() > 50
    np.testing.assert_array_equal(gi.cpu().numpy(), wi)
    pairs = ops.radius_pairs(src.cuda(), dst.cuda(), r, sl.cuda(), dl.cuda()).cpu().numpy()
    np.testing.assert_array_equal(pairs, pairs_oracle(src.numpy(), dst.numpy(), r, sl.numpy(), dl.numpy(), None, None))
