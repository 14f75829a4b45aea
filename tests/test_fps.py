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
