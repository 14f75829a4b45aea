"""farthest_point_sample against a NumPy oracle written here."""
import numpy as np
import pytest
import torch

from pcgrasp import ops
from conftest import ALL_DTYPES, DEVICES, cloud, ragged_lengths, requires_cuda


def fps_oracle(pts, k, n, start=0):
    """Naive FPS on one cloud. Distances in the compute dtype, summed over
    dimensions in order with each operation rounded (numpy never fuses)."""
    pts = pts[:n]
    m = min(k, n)
    out = np.full(k, -1, dtype=np.int64)
    if m == 0:
        return out
    mind = np.full(n, np.inf, dtype=pts.dtype)
    sel = start
    for s in range(m):
        out[s] = sel
        mind[sel] = -1
        if s + 1 == m:
            break
        diff = pts - pts[sel]
        d = diff[:, 0] * diff[:, 0]
        for j in range(1, pts.shape[1]):
            d = d + diff[:, j] * diff[:, j]
        mind = np.minimum(mind, d)
        sel = int(np.argmax(mind))  # first maximum: lowest index on ties
    return out


def compute_np(t):
    dt = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.to(dt).numpy()


@pytest.mark.parametrize("kind", ["uniform", "clustered", "duplicates", "lattice", "planar"])
@pytest.mark.parametrize("D", [3, 1, 2, 5, 8])
def test_fps_matches_oracle_ragged(rng, kind, D):
    B, N, k = 5, 97, 20
    pts = cloud(rng, B, N, D, torch.float32, kind)
    lens = ragged_lengths(B, N, rng)
    lens[1] = 7  # fewer points than k
    got = ops.farthest_point_sample(pts, k, lengths=lens)
    P = compute_np(pts)
    for b in range(B):
        np.testing.assert_array_equal(got[b].numpy(), fps_oracle(P[b], k, int(lens[b])), err_msg=f"cloud {b}")


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_fps_dtypes(rng, dtype):
    pts = cloud(rng, 3, 200, 3, dtype)
    got = ops.farthest_point_sample(pts, 32)
    P = compute_np(pts)
    for b in range(3):
        np.testing.assert_array_equal(got[b].numpy(), fps_oracle(P[b], 32, 200))


def test_fps_large_cloud_parallel_path(rng):
    # one cloud bigger than the CPU kernel's chunk: exercises the chunked argmax
    pts = cloud(rng, 1, 70000, 3, torch.float32, "lattice")  # many exact ties
    got = ops.farthest_point_sample(pts, 40)
    np.testing.assert_array_equal(got[0].numpy(), fps_oracle(compute_np(pts)[0], 40, 70000))


def test_fps_indices_distinct_and_valid(rng):
    pts = cloud(rng, 4, 50, 3, torch.float32, "duplicates")
    lens = torch.tensor([50, 10, 1, 0])
    got = ops.farthest_point_sample(pts, 30, lengths=lens)
    for b in range(4):
        row = got[b][got[b] >= 0]
        n = int(lens[b])
        assert len(row) == min(30, n)
        assert len(set(row.tolist())) == len(row)
        assert (got[b][len(row):] == -1).all()
        assert (row < n).all()


def test_fps_per_cloud_k_and_start_tensor(rng):
    pts = cloud(rng, 3, 60, 3)
    k = torch.tensor([5, 0, 12])
    start = torch.tensor([7, 3, 59])
    got = ops.farthest_point_sample(pts, k, start=start)
    assert got.shape == (3, 12)
    P = compute_np(pts)
    for b in range(3):
        want = fps_oracle(P[b], int(k[b]), 60, int(start[b]))
        want = np.concatenate([want, np.full(12 - len(want), -1)])
        np.testing.assert_array_equal(got[b].numpy(), want)


def test_fps_random_start_reproducible_and_in_range(rng):
    pts = cloud(rng, 6, 40, 3)
    lens = torch.tensor([40, 1, 0, 17, 2, 40])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = ops.farthest_point_sample(pts, 4, lengths=lens, start="random", generator=g1)
    b = ops.farthest_point_sample(pts, 4, lengths=lens, start="random", generator=g2)
    assert torch.equal(a, b)
    firsts = []
    for s in range(50):
        r = ops.farthest_point_sample(pts, 4, lengths=lens, start="random", generator=torch.Generator().manual_seed(s))
        for bb in range(6):
            n = int(lens[bb])
            if n == 0:
                assert (r[bb] == -1).all()
            else:
                assert 0 <= r[bb, 0] < n
        firsts.append(int(r[0, 0]))
    assert len(set(firsts)) > 10  # actually random over the cloud


def test_fps_k_zero_and_empty_batch():
    assert ops.farthest_point_sample(torch.rand(2, 5, 3), 0).shape == (2, 0)
    assert ops.farthest_point_sample(torch.rand(0, 5, 3), 4).shape == (0, 4)
    assert (ops.farthest_point_sample(torch.rand(2, 0, 3), 4) == -1).all()


def test_fps_opcheck(rng):
    pts = cloud(rng, 2, 30, 3)
    args = (pts, torch.tensor([30, 12]), torch.tensor([8, 8]), torch.tensor([0, 3]), 8)
    torch.library.opcheck(torch.ops.pcgrasp.farthest_point_sample.default, args)


@requires_cuda
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("kind", ["uniform", "lattice", "duplicates"])
def test_fps_cuda_bit_identical_to_cpu(rng, dtype, kind):
    pts = cloud(rng, 6, 3000, 3, dtype, kind)
    lens = ragged_lengths(6, 3000, rng)
    k = torch.tensor([64, 0, 5, 300, 64, 1])
    cpu = ops.farthest_point_sample(pts, k, lengths=lens, start="random", generator=torch.Generator().manual_seed(1))
    gpu = ops.farthest_point_sample(pts.cuda(), k.cuda(), lengths=lens.cuda(), start="random",
                                    generator=torch.Generator().manual_seed(1))
    assert torch.equal(cpu, gpu.cpu())


@pytest.mark.parametrize("checks", [True, False])
def test_fps_invalid_start_raises_with_checks_on_and_off(checks):
    # the same error on every device, whether or not the Python value checks run
    pts = torch.rand(2, 10, 3)
    old = ops.set_data_checks(checks)
    try:
        for dev in DEVICES:
            for start in ([0, 5], [-1, 0], [0, 10]):
                with pytest.raises(ValueError, match="start"):
                    ops.farthest_point_sample(pts.to(dev), 3, lengths=torch.tensor([10, 5], device=dev),
                                              start=torch.tensor(start, device=dev))
            # an empty cloud accepts any start; a valid one works
            got = ops.farthest_point_sample(pts.to(dev), 3, lengths=torch.tensor([0, 5], device=dev),
                                            start=torch.tensor([7, 4], device=dev))
            assert got[0].tolist() == [-1, -1, -1] and got[1, 0] == 4
    finally:
        ops.set_data_checks(old)


@pytest.mark.parametrize("device", DEVICES)
def test_fps_non_finite_points_with_checks_off_never_leave_the_cloud(rng, device):
    """NaN / inf coordinates are refused by the Python check. With value checks off (or a direct
    torch.ops call) the CPU kernel still refuses them (one cheap pass; it used to return index n,
    and write there, or repeat points), and the CUDA kernel, which cannot raise without a host
    sync, returns unspecified samples whose indices stay inside their cloud: the m first distinct
    points of [0, n), the rest -1, never a crash."""
    old = ops.set_data_checks(False)
    try:
        for trial in range(60):
            B, N = int(rng.integers(1, 3)), int(rng.integers(1, 2500)) if trial % 2 else int(rng.integers(1, 20))
            D = int(rng.choice([1, 2, 3, 5]))
            pts = torch.as_tensor(rng.random((B, N, D)), dtype=torch.float64 if trial % 3 == 0 else torch.float32)
            pts[torch.as_tensor(rng.random((B, N)) < rng.random())] = float("nan") if trial % 4 else float("inf")
            lengths = torch.as_tensor(rng.integers(0, N + 1, B))
            k = int(rng.integers(1, N + 1))
            finite = all(bool(torch.isfinite(pts[b, :int(lengths[b])]).all()) for b in range(B))
            if device == "cpu" and not finite:
                with pytest.raises(ValueError, match="points must be finite"):
                    ops.farthest_point_sample(pts, k, lengths=lengths)
                continue
            got = ops.farthest_point_sample(pts.to(device), k, lengths=lengths.to(device)).cpu()
            for b in range(B):
                m = min(k, int(lengths[b]))
                row = got[b].tolist()
                assert all(0 <= i < int(lengths[b]) for i in row[:m]) and len(set(row[:m])) == m, (trial, row)
                assert row[m:] == [-1] * (k - m)
    finally:
        ops.set_data_checks(old)


# ---------------------------------------------------------------- CPU paths
# The CPU kernel has two exact paths: vanilla (every point, every step) and
# bucketed (a k-d tree of leaf buckets that skips the leaves a new centre
# cannot change), chosen by size. PCGRASP_FPS_CPU=vanilla|bucket forces one
# and PCGRASP_FPS_LEAF sets the bucket size; both are read once per process,
# so each setting runs in its own subprocess on the same saved inputs.
_PATH_WORKER = r"""
import sys
import torch
from pcgrasp import ops
cases = torch.load(sys.argv[1])
torch.save([ops.farthest_point_sample(c["points"], c["k"], lengths=c["lengths"], start=c["start"])
            for c in cases], sys.argv[2])
"""


def _grid(n_side, D, scale):
    axes = [np.arange(n_side) * scale] * D
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, D)


def _path_cases(rng):
    """Clouds big enough for the bucketed path (n >= 2048, >= 96 samples) with
    every kind of tie, several D and both compute dtypes."""
    cases = []

    def add(x, k, dtype=torch.float32, lengths=None, start="first"):
        pts = torch.as_tensor(np.asarray(x)).to(dtype)
        if pts.dim() == 2:
            pts = pts[None]
        cases.append(dict(points=pts, k=k, lengths=lengths, start=start))

    for D, dtype in ((3, torch.float32), (3, torch.float64), (2, torch.float32), (5, torch.float64)):
        add(cloud(rng, 3, 6000, D, dtype, "uniform"), 160, dtype,
            lengths=torch.tensor([6000, 2100, 0]), start=torch.tensor([17, 2099, 0]))
    add(cloud(rng, 2, 8000, 3, torch.float32, "clustered"), 200)
    add(cloud(rng, 2, 5000, 2, torch.float64, "clustered"), 150, torch.float64, start=torch.tensor([4999, 123]))
    # many exact duplicates: 8000 copies of 100 points, so past 100 samples every distance is 0
    base = rng.random((100, 3))
    add(base[rng.integers(0, 100, 8000)], 240)
    add(cloud(rng, 1, 6000, 5, torch.float32, "duplicates"), 128, start=torch.tensor([3333]))
    # grids: massive ties (an integer lattice with 64 distinct points, and a 22^3 grid of 0.1 steps)
    add(cloud(rng, 2, 10000, 3, torch.float64, "lattice"), 200, torch.float64)
    add(_grid(22, 3, 0.1)[rng.permutation(22 ** 3)], 300)
    add(_grid(80, 2, 0.25), 200, torch.float64)
    # degenerate: a line, a plane, all identical
    t = rng.random(5000)
    add(np.stack([t, 2 * t, -t], -1), 120)
    add(cloud(rng, 1, 7000, 3, torch.float32, "planar"), 150)
    add(np.full((3000, 3), 0.7), 100, start=torch.tensor([2500]))
    # counts above the length: the whole cloud is ordered
    add(cloud(rng, 2, 2600, 3), torch.tensor([3000, 2200]), lengths=torch.tensor([2500, 2600]))
    # D=1 and a tiny cloud (vanilla below the size threshold either way)
    add(rng.random((2, 4000, 1)), 100)
    add(cloud(rng, 2, 50, 3), 20, lengths=torch.tensor([50, 1]))
    return cases


def _run_path(env_extra, inp, out):
    import os
    import subprocess
    import sys

    env = dict(os.environ, **env_extra)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
                                        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return subprocess.Popen([sys.executable, "-c", _PATH_WORKER, inp, out], env=env)


def test_fps_cpu_bucket_and_vanilla_paths_identical(rng, tmp_path):
    cases = _path_cases(rng)
    inp = str(tmp_path / "in.pt")
    torch.save(cases, inp)
    settings = {"vanilla": {"PCGRASP_FPS_CPU": "vanilla"},
                "bucket": {"PCGRASP_FPS_CPU": "bucket", "OMP_NUM_THREADS": "2"},
                "bucket-leaf3": {"PCGRASP_FPS_CPU": "bucket", "PCGRASP_FPS_LEAF": "3", "OMP_NUM_THREADS": "1"}}
    procs = {name: _run_path(env, inp, str(tmp_path / f"{name}.pt")) for name, env in settings.items()}
    for name, p in procs.items():
        assert p.wait(timeout=300) == 0, name
    got = {name: torch.load(str(tmp_path / f"{name}.pt")) for name in settings}
    # in this process: the default (auto) selection
    got["auto"] = [ops.farthest_point_sample(c["points"], c["k"], lengths=c["lengths"], start=c["start"])
                   for c in cases]
    for i, c in enumerate(cases):
        P = compute_np(c["points"])
        B, N, _ = P.shape
        K = int(c["k"].max()) if isinstance(c["k"], torch.Tensor) else c["k"]
        lens = c["lengths"] if c["lengths"] is not None else torch.full((B,), N)
        ks = c["k"] if isinstance(c["k"], torch.Tensor) else torch.full((B,), K)
        st = c["start"] if isinstance(c["start"], torch.Tensor) else torch.zeros(B, dtype=torch.long)
        want = np.full((B, K), -1, dtype=np.int64)
        for b in range(B):
            row = fps_oracle(P[b], int(ks[b]), int(lens[b]), int(st[b]))
            want[b, :len(row)] = row
        for name, res in got.items():
            np.testing.assert_array_equal(res[i].numpy(), want, err_msg=f"case {i} ({name})")
