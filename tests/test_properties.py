"""Property-based tests (hypothesis) for every op in pcgrasp.ops, against the
brute-force oracles of the per-op test files.

Each example is drawn as a few integers (shape parameters, a data kind, a
lengths mode, a seed) and its arrays are built with numpy's default_rng, so
examples are cheap and shrink fast. Exact indices are asserted where the
contract promises them: float64 inputs, and data whose distances every dtype
computes exactly (integer lattices and dyadic grids: exact ties, boundaries
hit exactly). Continuous float32 / half data get checks that allow only the
ambiguity float rounding can cause (a band around the radius, reordered
near-ties).

Profiles (tests/conftest.py): "ci" (the default: few examples, derandomized,
so CI is reproducible) and "thorough" (pytest --hypothesis-profile=thorough).
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import example, given, strategies as st

from pcgrasp import ops
from conftest import cloud, ragged_lengths
from test_ball_query import ball_oracle
from test_correspondences import corr_oracle, pairs_oracle, random_rigid
from test_cylinder_query import cyl_oracle, rotations
from test_fps import compute_np, fps_oracle
from test_gather import gather_oracle
from test_interpolate import interp_oracle
from test_knn import RTOL, check_knn, knn_oracle
from test_point_info_nce import fnm_oracle, naive_info_nce
from test_sequencer_ragged import order_oracle
from test_voxelize import voxel_oracle

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]  # shrinks towards float64
# exact-data kinds listed twice: drawn more often, so exact ties and boundaries turn up in few examples
KINDS = ["uniform", "lattice", "dyadic", "clustered", "duplicates", "lattice", "planar", "dyadic"]
EXACT_KINDS = ("lattice", "dyadic")
LEN_MODES = ["ragged", "full", "random", "ragged", "empty"]  # ragged: one cloud empty, one full
# radii / sizes on which exact data sits exactly on the boundary (all dyadic: exact in every dtype)
EXACT_RADII = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5]
TIE_RADII = [1.0, 2.0]  # always tried on exact data: lattice and dyadic points often lie exactly this far apart


def exact(dtype, kind):
    return dtype == torch.float64 or kind in EXACT_KINDS


def make_cloud(rng, B, N, D, dtype, kind):
    if kind == "dyadic":  # multiples of 1/8 in [0, 2): exact in bfloat16, distances exact in float32
        return torch.as_tensor(rng.integers(0, 16, size=(B, N, D)) / 8.0).to(dtype)
    return cloud(rng, B, N, D, dtype, kind)


def make_lengths(rng, B, N, mode):
    if mode == "full":
        return torch.full((B,), N, dtype=torch.int64)
    if mode == "empty":
        return torch.zeros(B, dtype=torch.int64)
    if mode == "ragged":  # one empty and one full cloud when B >= 2
        return ragged_lengths(B, N, rng)
    return torch.as_tensor(rng.integers(0, N + 1, size=B), dtype=torch.int64)


@st.composite
def setups(draw, D=(1, 8), dtypes=DTYPES, kinds=KINDS, max_b=3, max_n=100, max_m=24):
    """Shape parameters, dtype, data kind, lengths modes and a seed. B >= 1:
    empty batches are test_empty_batch_every_op."""
    s = SimpleNamespace(
        B=draw(st.integers(1, max_b)), N=draw(st.integers(0, max_n)), M=draw(st.integers(0, max_m)),
        D=draw(st.integers(*D)), dtype=draw(st.sampled_from(dtypes)), kind=draw(st.sampled_from(kinds)),
        qmode=draw(st.sampled_from(LEN_MODES)), pmode=draw(st.sampled_from(LEN_MODES)),
        seed=draw(st.integers(0, 2**32 - 1)))
    s.exact = exact(s.dtype, s.kind)
    return s


def fixed(kind="lattice", dtype=torch.float32, B=2, N=60, M=20, D=3, qmode="ragged", pmode="full", seed=7):
    """An explicit example (@example): exact data with many exact ties and
    boundary hits, run in every profile whatever hypothesis draws."""
    return SimpleNamespace(B=B, N=N, M=M, D=D, dtype=dtype, kind=kind, qmode=qmode, pmode=pmode, seed=seed,
                           exact=exact(dtype, kind))


def build_pair(s):
    """query [B, M, D], points [B, N, D] and their lengths."""
    rng = np.random.default_rng(s.seed)
    points = make_cloud(rng, s.B, s.N, s.D, s.dtype, s.kind)
    query = make_cloud(rng, s.B, s.M, s.D, s.dtype, s.kind)
    if s.kind not in EXACT_KINDS:
        query = (query.double() * 1.2 - 0.1).to(s.dtype)  # some queries outside the bbox
    return rng, query, points, make_lengths(rng, s.B, s.M, s.qmode), make_lengths(rng, s.B, s.N, s.pmode)


def pick_radii(draw, s, hi=1.2):
    """A drawn radius, and on exact data also the radii that produce exact boundary ties."""
    if s.kind in EXACT_KINDS:
        r = draw(st.sampled_from(EXACT_RADII))
        return [r] + [t for t in TIE_RADII if t != r]
    return [draw(st.integers(0, 100)) / 100 * hi]


# ---------------------------------------------------------------------------
# farthest_point_sample


@given(s=setups(max_n=80), k=st.integers(0, 30), per_cloud=st.booleans(), start_tensor=st.booleans())
def test_fps_property(s, k, per_cloud, start_tensor):
    rng, _, pts, _, lens = build_pair(s)
    # per-cloud counts [B] (K = max) or one int
    kk = torch.as_tensor(rng.integers(0, k + 1, size=s.B), dtype=torch.int64) if per_cloud else k
    K = (int(kk.max()) if s.B else 0) if per_cloud else k
    starts = [int(rng.integers(0, max(int(n), 1))) for n in lens]
    start = torch.tensor(starts, dtype=torch.int64) if start_tensor else "first"
    got = ops.farthest_point_sample(pts, kk, lengths=lens, start=start)
    assert got.shape == (s.B, K) and got.dtype == torch.int64
    P = compute_np(pts)  # the contract: identical indices for every dtype (half computed in float32)
    for b in range(s.B):
        kb = int(kk[b]) if per_cloud else k
        want = fps_oracle(P[b], kb, int(lens[b]), starts[b] if start_tensor else 0)
        want = np.concatenate([want, np.full(K - kb, -1)])
        np.testing.assert_array_equal(got[b].numpy(), want, err_msg=f"cloud {b}")


# ---------------------------------------------------------------------------
# knn / three_nn / inverse_distance_weights


@given(s=setups(), k=st.integers(0, 80))
@example(s=fixed(dtype=torch.bfloat16, D=2), k=12)
def test_knn_property(s, k):
    _, query, points, qlens, lens = build_pair(s)
    check_knn(query, points, k, qlens, lens, exact_idx=s.exact or s.N == 0)  # (its loose path needs N > 0)


@given(s=setups())
def test_three_nn_and_weights_property(s):
    _, query, points, qlens, lens = build_pair(s)
    dist2, idx = ops.three_nn(query, points, query_lengths=qlens, lengths=lens)
    d_knn, i_knn = ops.knn(query, points, 3, query_lengths=qlens, lengths=lens)
    assert torch.equal(idx, i_knn) and torch.equal(dist2, d_knn)
    Q, P = query.double().numpy(), points.double().numpy()
    for b in range(s.B):
        wd, wi = knn_oracle(Q[b], P[b], 3, int(qlens[b]), int(lens[b]))
        if s.exact:
            np.testing.assert_array_equal(idx[b].numpy(), wi)
        np.testing.assert_array_equal(idx[b].numpy() < 0, wi < 0)
        np.testing.assert_allclose(dist2[b].double().numpy(), wd, rtol=RTOL[s.dtype], atol=1e-6)
    # inverse distance weights: 1 / (d + eps) normalised, 0 for padding, rows sum to 1 (or 0)
    d = dist2.double()
    w = ops.inverse_distance_weights(d)
    raw = np.where(np.isfinite(d.numpy()), 1.0 / (d.numpy() + 1e-8), 0.0)
    tot = raw.sum(-1, keepdims=True)
    want = np.divide(raw, tot, out=np.zeros_like(raw), where=tot > 0)
    np.testing.assert_allclose(w.numpy(), want, rtol=1e-12, atol=1e-15)
    assert np.all(np.isfinite(w.numpy()))


# ---------------------------------------------------------------------------
# ball_query


def pad_first(idx, dist, count):
    idx, dist = idx.copy(), dist.copy()
    for m in range(len(count)):
        if count[m] > 0:
            idx[m, count[m]:], dist[m, count[m]:] = idx[m, 0], dist[m, 0]
    return idx, dist


def loose_ball_check(idx, dist, count, Q, P, r, k, mq, n, order, pad, dtype):
    """Continuous float32/half data: float rounding may move points within a
    relative band around radius**2, and reorder near-ties; nothing else."""
    r2 = r * r
    band = 1e-5 * r2 + 1e-9
    M = Q.shape[0]
    for m in range(M):
        c = int(count[m])
        if m >= mq:
            assert c == 0 and (idx[m] == -1).all()
            continue
        got = idx[m, :c]
        d = ((P[:n] - Q[m]) ** 2).sum(-1)
        assert len(set(got.tolist())) == c and ((got >= 0) & (got < n)).all()
        tail = idx[m, c:]
        assert (tail == (got[0] if (pad == "first" and c) else -1)).all()
        assert (d[got] < r2 + band).all(), "a returned point is outside the ball"
        sure = np.nonzero(d < r2 - band)[0]
        maybe = np.nonzero(d < r2 + band)[0]
        assert min(k, len(sure)) <= c <= min(k, len(maybe))
        missing = np.setdiff1d(sure, got)
        if order == "first":
            assert (np.diff(got) > 0).all()
            if c < k:
                assert len(missing) == 0
            elif c:
                assert (missing > got[-1]).all(), "skipped an inside point with a lower index"
        else:
            assert (np.diff(d[got]) >= -band).all(), "not sorted by distance"
            if c < k:
                assert len(missing) == 0
            elif c and len(missing):
                assert d[missing].min() >= d[got].max() - band, "a nearer inside point was dropped"
        np.testing.assert_allclose(dist[m, :c].astype(np.float64), d[got], rtol=RTOL[dtype], atol=1e-6)


@st.composite
def ball_args(draw):
    s = draw(setups())
    return s, pick_radii(draw, s), draw(st.integers(0, 40))


@given(args=ball_args())
@example(args=(fixed(dtype=torch.float16), [1.0, 2.0], 12))
@example(args=(fixed(kind="dyadic", N=90), [0.5, 1.0], 40))
def test_ball_query_property(args):
    s, radii, k = args
    _, query, points, qlens, lens = build_pair(s)
    for r in radii:
        for order in ("nearest", "first"):
            for pad in ("none", "first"):
                check_ball(s, query, points, qlens, lens, r, k, order, pad)


def check_ball(s, query, points, qlens, lens, r, k, order, pad):
    idx, dist, count = ops.ball_query(query, points, r, k, query_lengths=qlens, lengths=lens, order=order, pad=pad)
    assert idx.shape == dist.shape == (s.B, s.M, k) and count.shape == (s.B, s.M)
    assert dist.dtype == s.dtype
    Q, P = query.double().numpy(), points.double().numpy()
    for b in range(s.B):
        qn, n = int(qlens[b]), int(lens[b])
        if s.exact:
            wi, wd, wc = ball_oracle(Q[b], P[b], r, k, qn, n, order)
            if pad == "first":
                wi, wd = pad_first(wi, wd, wc)
            np.testing.assert_array_equal(idx[b].numpy(), wi, err_msg=f"cloud {b}")
            np.testing.assert_array_equal(count[b].numpy(), wc)
            np.testing.assert_allclose(dist[b].double().numpy(), wd, rtol=RTOL[s.dtype], atol=1e-6)
        else:
            loose_ball_check(idx[b].numpy(), dist[b].double().numpy(), count[b].numpy(), Q[b], P[b], r, k, qn, n,
                             order, pad, s.dtype)


# ---------------------------------------------------------------------------
# gather_points / scatter_add_points / three_interpolate

ATOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}


# B >= 1 (the oracle reshapes by B); the empty batch is test_gather_scatter_empty_batch
@given(B=st.integers(1, 3), N=st.integers(0, 12), C=st.integers(1, 6),
       rest=st.lists(st.integers(0, 5), min_size=1, max_size=2), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**32 - 1))
def test_gather_scatter_property(B, N, C, rest, dtype, seed):
    rng = np.random.default_rng(seed)
    features = torch.as_tensor(rng.normal(size=(B, N, C))).to(dtype)
    idx = torch.as_tensor(rng.integers(-1, N, size=(B, *rest)) if N else np.full((B, *rest), -1), dtype=torch.int64)
    out = ops.gather_points(features, idx)
    assert out.shape == (B, *rest, C) and out.dtype == dtype
    torch.testing.assert_close(out, gather_oracle(features, idx), rtol=0, atol=0)
    values = torch.as_tensor(rng.normal(size=(B, *rest, C))).to(dtype)
    sc = ops.scatter_add_points(values, idx, N)
    assert sc.shape == (B, N, C) and sc.dtype == dtype
    want, mag = np.zeros((B, N, C)), np.zeros((B, N, C))
    V, I = values.double().numpy().reshape(B, -1, C), idx.numpy().reshape(B, -1)
    for b in range(B):
        keep = I[b] >= 0
        np.add.at(want[b], I[b][keep], V[b][keep])
        np.add.at(mag[b], I[b][keep], np.abs(V[b][keep]))
    err = np.abs(sc.double().numpy() - want)
    assert (err <= ATOL[dtype] * np.maximum(mag, 1)).all(), f"scatter error {err.max()}"
    # adjoint identity <gather(f, idx), v> = <f, scatter(v, idx)> in float64
    if dtype == torch.float64:
        lhs = (ops.gather_points(features, idx) * values).sum()
        rhs = (features * ops.scatter_add_points(values, idx, N)).sum()
        torch.testing.assert_close(lhs, rhs)


@pytest.mark.parametrize("op", ["gather", "scatter"])
def test_gather_scatter_empty_batch(op):
    idx = torch.zeros(0, 4, dtype=torch.int64)
    if op == "gather":
        assert ops.gather_points(torch.rand(0, 5, 3), idx).shape == (0, 4, 3)
    else:
        assert ops.scatter_add_points(torch.rand(0, 4, 3), idx, 5).shape == (0, 5, 3)


@given(B=st.integers(0, 3), N=st.integers(0, 10), M=st.integers(0, 8), C=st.integers(1, 5),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_three_interpolate_property(B, N, M, C, dtype, seed):
    rng = np.random.default_rng(seed)
    features = torch.as_tensor(rng.normal(size=(B, N, C))).to(dtype)
    idx = torch.as_tensor(rng.integers(-1, N, size=(B, M, 3)) if N else np.full((B, M, 3), -1), dtype=torch.int64)
    weight = torch.as_tensor(rng.random((B, M, 3))).to(dtype)
    f = features.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    out = ops.three_interpolate(f, idx, w)
    assert out.shape == (B, M, C) and out.dtype == dtype
    f64, w64 = features.double().requires_grad_(), weight.double().requires_grad_()
    want = interp_oracle(f64, idx, w64)
    tol = ATOL[dtype] if dtype != torch.float32 else 1e-6
    torch.testing.assert_close(out.double(), want.detach(), rtol=tol, atol=tol)
    g = torch.as_tensor(rng.normal(size=(B, M, C)))
    out.backward(g.to(dtype))
    if want.requires_grad:  # (not when every neighbour is padding)
        want.backward(g)
    gf = f64.grad if f64.grad is not None else torch.zeros_like(f64)
    gw = w64.grad if w64.grad is not None else torch.zeros_like(w64)
    # features' grads accumulate up to 3 * M terms
    torch.testing.assert_close(f.grad.double(), gf, rtol=tol, atol=tol * max(1, 3 * M))
    torch.testing.assert_close(w.grad.double(), gw, rtol=tol, atol=tol * C)


# ---------------------------------------------------------------------------
# correspondences / radius_pairs


def world_d2(src, dst, ts, td, b, n, m):
    ws, wd = src[b, :n], dst[b, :m]
    if ts is not None:
        ws = ws @ ts[b, :3, :3].T + ts[b, :3, 3]
    if td is not None:
        wd = wd @ td[b, :3, :3].T + td[b, :3, 3]
    return ((ws[:, None] - wd[None]) ** 2).sum(-1)


@st.composite
def corr_args(draw):
    s = draw(setups(D=(3, 3), max_n=90, max_m=90))
    r = pick_radii(draw, s, hi=0.4)
    tmode = draw(st.sampled_from(["none", "integer", "rigid"] if s.kind not in EXACT_KINDS else ["none", "integer"]))
    cap = draw(st.one_of(st.none(), st.integers(1, 6)))
    return s, r, tmode, cap


@given(args=corr_args())
@example(args=(fixed(N=50, M=60), [1.0, 2.0], "none", None))
@example(args=(fixed(dtype=torch.float16, B=3, N=50, M=60, seed=5), [1.0, 1.5], "integer", 3))
@example(args=(fixed(kind="dyadic", dtype=torch.bfloat16, N=80, M=90), [0.5, 1.0], "none", 2))
def test_correspondences_and_radius_pairs_property(args):
    s, radii, tmode, cap = args
    rng = np.random.default_rng(s.seed)
    src = make_cloud(rng, s.B, s.N, 3, s.dtype, s.kind)
    dst = make_cloud(rng, s.B, s.M, 3, s.dtype, s.kind)
    sl, dl = make_lengths(rng, s.B, s.N, s.qmode), make_lengths(rng, s.B, s.M, s.pmode)
    tdt = torch.float64 if s.dtype == torch.float64 else torch.float32  # the kernels' compute dtype
    ts = td = None
    if tmode != "none":
        ts = random_rigid(rng, s.B, tdt, integer=tmode == "integer")
        td = random_rigid(rng, s.B, tdt, integer=tmode == "integer")
    for r in radii:
        check_corr(s, src, dst, sl, dl, ts, td, r, cap)


def check_corr(s, src, dst, sl, dl, ts, td, r, cap):
    idx, dist = ops.correspondences(src, dst, r, sl, dl, ts, td)
    assert idx.shape == dist.shape == (s.B, s.N) and dist.dtype == s.dtype
    pairs = ops.radius_pairs(src, dst, r, sl, dl, ts, td, max_pairs=cap)
    assert pairs.dtype == torch.int64 and pairs.shape[1] == 3
    S, Dn = src.double().numpy(), dst.double().numpy()
    T_s = None if ts is None else ts.double().numpy()
    T_d = None if td is None else td.double().numpy()
    if s.exact:
        wi, wd = corr_oracle(S, Dn, r, sl, dl, T_s, T_d)
        np.testing.assert_array_equal(idx.numpy(), wi)
        np.testing.assert_allclose(dist.double().numpy(), wd, rtol=max(RTOL[s.dtype], 1e-9), atol=1e-9)
        np.testing.assert_array_equal(pairs.numpy(), pairs_oracle(S, Dn, r, sl, dl, T_s, T_d, cap))
        return
    # continuous float32/half: only the band around radius**2 and near-ties are ambiguous
    r2 = r * r
    band = 1e-4 * r2 + 1e-5  # world coordinates up to ~15 are rounded to float32
    P = pairs.numpy()
    assert np.array_equal(P, np.unique(P, axis=0)), "pairs not sorted by (b, i, j) or not unique"
    for b in range(s.B):
        n, m = int(sl[b]), int(dl[b])
        assert (idx[b, n:] == -1).all()
        d = world_d2(S, Dn, T_s, T_d, b, n, m)
        Pb = P[P[:, 0] == b]
        for i in range(n):
            j = int(idx[b, i])
            di = d[i] if m else np.zeros(0)
            if j < 0:
                assert not (di < r2 - band).any(), f"missed a match for src {i}"
            else:
                assert j < m and di[j] < r2 + band and di[j] <= di.min() + band
                np.testing.assert_allclose(float(dist[b, i]), di[j], rtol=RTOL[s.dtype], atol=band)
            got = Pb[Pb[:, 1] == i, 2]
            sure, maybe = np.nonzero(di < r2 - band)[0], np.nonzero(di < r2 + band)[0]
            assert np.isin(got, maybe).all(), "a pair outside the radius"
            missing = np.setdiff1d(sure, got)
            if cap is None:
                assert len(missing) == 0, "a pair inside the radius is missing"
            else:
                assert min(cap, len(sure)) <= len(got) <= min(cap, len(maybe))
                if len(missing) and len(got):
                    assert di[missing].min() >= di[got].max() - band
        assert len(Pb) == 0 or Pb[:, 1].max() < n


# ---------------------------------------------------------------------------
# false_negative_mask / point_info_nce


@st.composite
def fnm_args(draw):
    s = draw(setups(D=(3, 3), max_n=1, max_m=40))
    return s, (EXACT_RADII if s.kind in EXACT_KINDS else pick_radii(draw, s, hi=1.5) + [0.0])


@given(args=fnm_args())
@example(args=(fixed(M=30), EXACT_RADII))
def test_false_negative_mask_property(args):
    s, gammas = args
    rng = np.random.default_rng(s.seed)
    xyz = make_cloud(rng, s.B, s.M, 3, s.dtype, s.kind)
    X = xyz.double().numpy()
    for gamma in gammas:
        got = ops.false_negative_mask(xyz, gamma)
        assert got.shape == (s.B, s.M, s.M) and got.dtype == torch.bool
        want = fnm_oracle(X, gamma)
        if s.kind not in EXACT_KINDS:  # float rounding decides only within a band around gamma**2
            d2 = ((X[:, :, None] - X[:, None]) ** 2).sum(-1)
            sure = np.abs(d2 - gamma * gamma) > 1e-5 * gamma * gamma + 1e-12
            want, got = want[sure], got.numpy()[sure]
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=f"gamma={gamma}")


@st.composite
def nce_args(draw):
    return SimpleNamespace(
        B=draw(st.integers(1, 2)), M=draw(st.integers(1, 24)), C=draw(st.integers(1, 12)),
        dtype=draw(st.sampled_from(DTYPES)), tau=draw(st.sampled_from([0.07, 0.01, 0.5, 1.0])),
        gamma=draw(st.sampled_from([None, 0.0, 0.5, 1.0, 1.5, 1.0])), kind=draw(st.sampled_from(EXACT_KINDS)),
        valid=draw(st.sampled_from(["none", "random", "empty_row", "all_false"])),
        normalised=draw(st.booleans()), scale=draw(st.sampled_from([1.0, 3.0])),
        reduction=draw(st.sampled_from(["mean", "sum", "none"])), seed=draw(st.integers(0, 2**32 - 1)))


EPS = {torch.float64: 2.3e-16, torch.float32: 1.2e-7, torch.float16: 1.2e-7, torch.bfloat16: 1.2e-7}
OUT_EPS = {torch.float64: 0.0, torch.float32: 0.0, torch.float16: 2 ** -11, torch.bfloat16: 2 ** -8}


@given(a=nce_args())
@example(a=SimpleNamespace(B=2, M=20, C=6, dtype=torch.float32, tau=0.07, gamma=1.0, kind="lattice", valid="random",
                           normalised=False, scale=3.0, reduction="mean", seed=3))
def test_point_info_nce_property(a):
    rng = np.random.default_rng(a.seed)
    fa = rng.normal(size=(a.B, a.M, a.C))
    fb = fa + 0.3 * rng.normal(size=fa.shape) if rng.random() < 0.5 else rng.normal(size=fa.shape)
    if a.normalised:
        fa, fb = (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12) for x in (fa, fb))
    fa, fb = torch.as_tensor(fa * a.scale).to(a.dtype), torch.as_tensor(fb * a.scale).to(a.dtype)
    # exact positions: the gamma classification is the same in every dtype
    xyz = make_cloud(rng, a.B, a.M, 3, a.dtype, a.kind)
    valid = None
    if a.valid != "none":
        valid = torch.as_tensor(rng.random((a.B, a.M)) > 0.3)
        if a.valid == "empty_row":
            valid[0] = False
        elif a.valid == "all_false":
            valid[:] = False
    x1, y1 = fa.clone().requires_grad_(), fb.clone().requires_grad_()
    got = ops.point_info_nce(x1, y1, xyz, a.tau, a.gamma, valid, a.reduction)
    x2, y2 = fa.double().requires_grad_(), fb.double().requires_grad_()
    rows = naive_info_nce(x2, y2, xyz.double(), a.tau, a.gamma, valid, "none")
    div = 1
    if a.reduction == "none":
        want = rows
    elif a.reduction == "sum":
        want = rows.sum()
    else:  # mean over valid rows; no valid row gives 0 (the op clamps the count to 1)
        div = max(a.B * a.M if valid is None else int(valid.sum()), 1)
        want = rows.sum() / div
    assert got.shape == want.shape
    assert torch.isfinite(got).all()
    # error model: a logit in the compute dtype errs by err (absolute); the loss
    # rows by 2 err; the gradients by 2 err * (softmax-weighted features) / tau
    A, Bf = x2.detach().abs(), y2.detach().abs()
    smax = max(1.0, float((A @ Bf.transpose(1, 2)).max()) / a.tau)
    err = 4 * a.C ** 0.5 * EPS[a.dtype] * smax
    nrows = a.B * a.M if a.reduction == "sum" else 1
    torch.testing.assert_close(got.double(), want.detach(), rtol=1e-5, atol=4 * err * nrows + 1e-12)
    w = torch.as_tensor(rng.normal(size=tuple(got.shape)))
    (got * w.to(got.dtype)).sum().backward()
    (want * w).sum().backward()
    wmax = float(w.abs().max()) if w.numel() else 0.0
    bounds = {"feat_a": 4 * err * wmax / div * float(Bf.max()) / a.tau,
              "feat_b": 4 * err * wmax / div * float(A.max()) / a.tau * a.M}
    for g_got, g_want, name in ((x1.grad, x2.grad, "feat_a"), (y1.grad, y2.grad, "feat_b")):
        assert g_got.dtype == a.dtype and torch.isfinite(g_got).all(), f"non-finite gradient of {name}"
        tol = bounds[name] + 2 * OUT_EPS[a.dtype] * float(g_want.abs().max()) + 1e-12
        torch.testing.assert_close(g_got.double(), g_want, rtol=0, atol=tol, msg=lambda m: f"{name}: {m}")
        if valid is not None:  # padding rows add no loss and are never negatives: no gradient
            assert (g_got[~valid] == 0).all(), f"padding rows of {name} got a gradient"


# ---------------------------------------------------------------------------
# voxelize


@st.composite
def voxel_args(draw):
    s = draw(setups(D=(3, 3), max_n=120))
    sizes = [0.25, 0.5, 1.0, 2.0] if s.kind in EXACT_KINDS else [0.005, 0.05, 0.3, 1.0, 0.1]
    return s, draw(st.sampled_from(sizes))


@given(args=voxel_args())
@example(args=(fixed(dtype=torch.float16), 0.5))
def test_voxelize_property(args):
    s, size = args
    rng = np.random.default_rng(s.seed)
    pts = make_cloud(rng, s.B, s.N, 3, s.dtype, s.kind)
    if s.kind in EXACT_KINDS:
        pts = (pts.double() - 1).to(s.dtype)  # negative lattice points: floor of exact negatives
    else:
        pts = (pts.double() * 2 - 0.7).to(s.dtype)
    lens = make_lengths(rng, s.B, s.N, s.pmode)
    coords, inverse, first = ops.voxelize(pts, size, lens)
    assert coords.dtype == torch.int32 and inverse.dtype == first.dtype == torch.int64
    P = compute_np(pts)  # half types are quantised in float32; the quotient in the compute dtype
    wc, wi, wf = voxel_oracle(P, lens, np.array(size, dtype=P.dtype))
    np.testing.assert_array_equal(coords.numpy().astype(np.int64), wc)
    np.testing.assert_array_equal(inverse.numpy(), wi)
    np.testing.assert_array_equal(first.numpy(), wf)


# ---------------------------------------------------------------------------
# cylinder_query


def signed_permutations(rng, B, M):
    R = np.zeros((B, M, 3, 3))
    for b in range(B):
        for m in range(M):
            R[b, m] = np.eye(3)[rng.permutation(3)] * rng.choice([-1, 1], size=3)[:, None]
    return torch.as_tensor(R)


@st.composite
def cyl_args(draw):
    s = draw(setups(D=(3, 3), max_m=16))
    if not s.exact:  # continuous float32/half: use exact data instead
        s.kind = draw(st.sampled_from(EXACT_KINDS))
        s.exact = True
    if s.kind in EXACT_KINDS:
        r = draw(st.sampled_from(EXACT_RADII))
        hmin = draw(st.sampled_from([-1.0, -0.5, 0.0, 0.5]))
        hmax = hmin + draw(st.sampled_from([0.0, 0.5, 1.0, 1.5]))
    else:
        r = draw(st.integers(0, 40)) / 100
        hmin = draw(st.integers(-30, 10)) / 100
        hmax = hmin + draw(st.integers(0, 40)) / 100
    return s, r, hmin, hmax, draw(st.integers(0, 40)), draw(st.sampled_from(["rotation", "general", "singular"]))


@given(args=cyl_args())
@example(args=(fixed(M=12), 1.0, 0.0, 1.0, 8, "rotation"))
def test_cylinder_query_property(args):
    s, r, hmin, hmax, k, rmode = args
    rng = np.random.default_rng(s.seed)
    pts = make_cloud(rng, s.B, s.N, 3, s.dtype, s.kind)
    q = make_cloud(rng, s.B, s.M, 3, s.dtype, s.kind)
    if s.kind in EXACT_KINDS:
        R = signed_permutations(rng, s.B, s.M)
    elif rmode == "rotation":
        R = rotations(rng, s.B, s.M)
    else:  # any matrix is allowed (both devices test q = R^T (p - c) exactly); also singular ones
        R = torch.as_tensor(rng.normal(size=(s.B, s.M, 3, 3)))
        if rmode == "singular":
            R[..., 2] = R[..., 0] * 0.5
    R = R.to(s.dtype if s.dtype == torch.float64 else torch.float32)
    ql, pl = make_lengths(rng, s.B, s.M, s.qmode), make_lengths(rng, s.B, s.N, s.pmode)
    Q, Rn, P = q.double().numpy(), R.double().numpy(), pts.double().numpy()
    for rr in [r] + ([1.0] if s.kind in EXACT_KINDS and r != 1.0 else []):
        for order in ("first", "nearest"):
            for pad in ("none", "first"):
                idx, count = ops.cylinder_query(q, R, pts, rr, hmin, hmax, k, ql, pl, order=order, pad=pad)
                assert idx.shape == (s.B, s.M, k) and count.shape == (s.B, s.M)
                for b in range(s.B):
                    wi, wc = cyl_oracle(Q[b], Rn[b], P[b], rr, hmin, hmax, k, int(ql[b]), int(pl[b]), order)
                    if pad == "first":
                        wi, _ = pad_first(wi, np.zeros(wi.shape), wc)
                    np.testing.assert_array_equal(idx[b].numpy(), wi, err_msg=f"cloud {b}, {order}, pad {pad}")
                    np.testing.assert_array_equal(count[b].numpy(), wc)


# ---------------------------------------------------------------------------
# nearest_neighbor_order


@given(s=setups(D=(3, 3), max_n=1, max_m=48))
@example(s=fixed(dtype=torch.float32, M=40, qmode="full"))
def test_nearest_neighbor_order_property(s):
    rng = np.random.default_rng(s.seed)
    kind = s.kind if s.exact else EXACT_KINDS[s.seed % 2]  # continuous half/float32: exact data
    c = make_cloud(rng, s.B, s.M, 3, s.dtype, kind)
    lens = make_lengths(rng, s.B, s.M, s.qmode)
    got = ops.nearest_neighbor_order(c, lengths=lens)
    assert got.shape == (s.B, s.M) and got.dtype == torch.int64
    C = c.double().numpy()
    for b in range(s.B):
        n = int(lens[b])
        assert got[b, :n].tolist() == order_oracle(C[b], n)
        assert (got[b, n:] == -1).all()


# ---------------------------------------------------------------------------
# masked_to_padded / padded_to_packed / packed_to_padded

RAGGED_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool]


@given(B=st.integers(0, 4), N=st.integers(0, 12), trailing=st.lists(st.integers(0, 3), max_size=2),
       dtype=st.sampled_from(RAGGED_DTYPES), p=st.sampled_from([0.0, 0.3, 0.7, 1.0]), extra=st.integers(0, 3),
       seed=st.integers(0, 2**32 - 1))
def test_ragged_property(B, N, trailing, dtype, p, extra, seed):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.integers(1, 50, size=(B, N, *trailing))).to(dtype)
    mask = torch.as_tensor(rng.random((B, N)) < p)
    padded, lengths, index = ops.masked_to_padded(x, mask, return_index=True)
    kept = [np.nonzero(mask[b].numpy())[0] for b in range(B)]
    L = max((len(k) for k in kept), default=0)
    assert padded.shape == (B, L, *trailing) and padded.dtype == dtype
    assert lengths.tolist() == [len(k) for k in kept]
    for b in range(B):
        n = len(kept[b])
        assert index[b, :n].tolist() == kept[b].tolist() and (index[b, n:] == -1).all()
        assert torch.equal(padded[b, :n], x[b, torch.as_tensor(kept[b], dtype=torch.int64)])
        assert (padded[b, n:] == 0).all()
    packed = ops.padded_to_packed(padded, lengths)
    assert torch.equal(packed, x[mask])
    back = ops.packed_to_padded(packed, lengths, max_len=L + extra, pad_value=7)
    assert back.shape == (B, L + extra, *trailing) and back.dtype == dtype
    fill = torch.tensor(7).to(dtype)
    for b in range(B):
        n = len(kept[b])
        assert torch.equal(back[b, :n], padded[b, :n]) and (back[b, n:] == fill).all()
    # padded_to_packed with arbitrary lengths: the valid prefixes, batch-major
    lens = torch.as_tensor(rng.integers(0, N + 1, size=B), dtype=torch.int64)
    want = torch.cat([x[b, :int(lens[b])] for b in range(B)]) if B else x.reshape(0, *trailing)
    assert torch.equal(ops.padded_to_packed(x, lens), want)


# ---------------------------------------------------------------------------
# empty batches (B = 0) for every op, with the shapes the contracts give


def test_empty_batch_every_op():
    E, Q, L0 = torch.rand(0, 5, 3), torch.rand(0, 4, 3), torch.zeros(0, dtype=torch.int64)
    assert ops.farthest_point_sample(E, 3).shape == (0, 3)
    assert ops.farthest_point_sample(E, L0).shape == (0, 0)
    assert [t.shape for t in ops.knn(Q, E, 2)] == [(0, 4, 2)] * 2
    assert [t.shape for t in ops.ball_query(Q, E, 0.3, 2, pad="first")] == [(0, 4, 2), (0, 4, 2), (0, 4)]
    assert ops.three_interpolate(E, torch.zeros(0, 4, 3, dtype=torch.int64), torch.rand(0, 4, 3)).shape == (0, 4, 3)
    assert [t.shape for t in ops.correspondences(E, Q, 0.1)] == [(0, 5)] * 2
    assert ops.radius_pairs(E, Q, 0.1, max_pairs=2).shape == (0, 3)
    assert ops.false_negative_mask(E, 0.1).shape == (0, 5, 5)
    assert float(ops.point_info_nce(torch.rand(0, 4, 8), torch.rand(0, 4, 8))) == 0.0
    assert [t.shape for t in ops.voxelize(E, 0.1)] == [(0, 4), (0,), (0,)]
    assert [t.shape for t in ops.cylinder_query(Q, torch.eye(3).expand(0, 4, 3, 3), E, 0.1, -0.1, 0.1, 3)] == \
        [(0, 4, 3), (0, 4)]
    assert ops.nearest_neighbor_order(E).shape == (0, 5)
    assert [t.shape for t in ops.masked_to_padded(E, torch.zeros(0, 5, dtype=torch.bool), True)] == \
        [(0, 0, 3), (0,), (0, 0)]
    assert ops.padded_to_packed(E, L0).shape == (0, 3)
    assert ops.packed_to_padded(torch.rand(0, 3), L0).shape == (0, 0, 3)
