"""voxelize against a NumPy oracle (and MinkowskiEngine when installed)."""
import numpy as np
import pytest
import torch

from pcgrasp import ops
from conftest import cloud, ragged_lengths, requires_cuda


def voxel_oracle(points, lengths, s):
    B, N, _ = points.shape
    rows, flat = [], []
    for b in range(B):
        n = int(lengths[b])
        q = np.floor(points[b, :n] / s).astype(np.int64)  # divided in the points' own dtype
        rows.append(np.concatenate([np.full((n, 1), b, dtype=np.int64), q], 1))
        flat.append(b * N + np.arange(n, dtype=np.int64))
    rows, flat = np.concatenate(rows).reshape(-1, 4), np.concatenate(flat)
    uniq, inv = np.unique(rows, axis=0, return_inverse=True)  # lexicographic
    inverse = np.full(B * N, -1)
    inverse[flat] = inv.reshape(-1)
    first = np.full(len(uniq), np.iinfo(np.int64).max)
    np.minimum.at(first, inv.reshape(-1), flat)
    return uniq, inverse, first


def assert_matches_oracle(pts, lens, s):
    coords, inverse, first = ops.voxelize(pts, s, lens)
    wc, wi, wf = voxel_oracle(pts.numpy(), lens, np.array(s, dtype=pts.numpy().dtype))
    assert coords.dtype == torch.int32
    np.testing.assert_array_equal(coords.numpy(), wc)
    np.testing.assert_array_equal(inverse.numpy(), wi)
    np.testing.assert_array_equal(first.numpy(), wf)


@pytest.mark.parametrize("kind", ["uniform", "clustered", "duplicates", "lattice"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voxelize_matches_oracle(rng, kind, dtype):
    B, N = 4, 500
    pts = cloud(rng, B, N, 3, dtype, kind) * 2 - 0.7  # negative coordinates too
    lens = ragged_lengths(B, N, rng)
    for s in (0.005, 0.05, 0.5):
        # the oracle divides in the same dtype (MinkowskiEngine: floor(coords / size))
        assert_matches_oracle(pts, lens, s)


# The CPU kernel splits its passes into per-thread chunks (4,096 points for the
# coordinates, 32,768 for each radix pass) and packs (b, x, y, z, point) into one
# 64-bit word; wider keys take the sort-based fallback. These cases cross both.
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voxelize_large_ragged_batches_any_thread_count(rng, threads, dtype):
    B, N = 5, 30000
    pts = cloud(rng, B, N, 3, dtype, "clustered") - 5
    pts[1, ::7] = pts[1, 3]  # many duplicates: one voxel holds thousands of points
    lens = torch.tensor([N, N, 0, N - 1, 17])  # an empty cloud between full ones
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for s in (0.003, 0.02, 0.4):
            assert_matches_oracle(pts, lens, s)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voxelize_keys_too_wide_to_pack(rng, dtype):
    # spans of ~2^29 voxels per axis (87 bits of key): the fallback; ~2^14 per axis with
    # 2^15 points: 45 bits of key plus 15 of index, just packed
    for span, N in ((2.0 ** 29, 2000), (2.0 ** 14, 2 ** 15)):
        pts = torch.as_tensor(rng.uniform(-span, span, (2, N, 3)), dtype=dtype).round()
        pts[0, : N // 2] = pts[0, N // 2:]  # exact duplicates in different rows
        lens = ragged_lengths(2, N, rng, with_empty=False)
        assert_matches_oracle(pts, lens, 1.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_voxelize_half_inputs_divide_in_float32(rng, dtype):
    pts = cloud(rng, 3, 2000, 3, torch.float32, "clustered").to(dtype)
    lens = ragged_lengths(3, 2000, rng)
    coords, inverse, first = ops.voxelize(pts, 0.01, lens)
    wc, wi, wf = voxel_oracle(pts.float().numpy(), lens, np.float32(0.01))
    np.testing.assert_array_equal(coords.numpy(), wc)
    np.testing.assert_array_equal(inverse.numpy(), wi)
    np.testing.assert_array_equal(first.numpy(), wf)


@pytest.mark.parametrize("threads", [1, 2])
def test_voxelize_kernel_names_the_first_bad_point_with_checks_off(rng, threads):
    # the Python check (on by default) refuses non-finite points first; the kernel's own
    # check must still refuse them, naming the lowest bad point whatever the thread count
    pts = cloud(rng, 3, 20000, 3)
    pts[1, 15000, 2] = float("nan")
    pts[2, 10, 0] = float("nan")
    pts[2, 5, 1] = 1e12  # out of int32 range at s = 0.01, and before the NaN
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with ops.data_checks(False):
            with pytest.raises(ValueError, match="NaN at cloud 1, point 15000"):
                ops.voxelize(pts, 0.01)
            pts[1, 15000, 2] = 0.5
            with pytest.raises(ValueError, match="overflow int32: floor"):
                ops.voxelize(pts, 0.01)
            # padding is never read
            ops.voxelize(pts, 0.01, torch.tensor([20000, 20000, 5]))
    finally:
        torch.set_num_threads(old)


def test_voxelize_round_trip_and_empty(rng):
    pts = cloud(rng, 2, 100, 3)
    coords, inverse, first = ops.voxelize(pts, 0.1, torch.tensor([0, 100]))
    assert (inverse[:100] == -1).all() and (inverse[100:] >= 0).all()
    # every point's voxel contains it; first is a member of its voxel
    flat = pts.reshape(-1, 3)
    assert torch.equal(coords[inverse[100:], 1:].long(), torch.floor(flat[100:] / 0.1).long())
    assert torch.equal(inverse[first], torch.arange(len(coords)))
    coords, inverse, first = ops.voxelize(pts, 0.1, torch.tensor([0, 0]))
    assert coords.shape == (0, 4) and (inverse == -1).all()


def test_voxelize_against_minkowski_engine(rng):
    ME = pytest.importorskip("MinkowskiEngine")
    pts = cloud(rng, 1, 5000, 3, torch.float32, "clustered")
    coords, inverse, first = ops.voxelize(pts, 0.005)
    _, me_map, me_inv = ME.utils.sparse_quantize(pts[0].numpy(), quantization_size=0.005,
                                                 return_index=True, return_inverse=True)
    me_coords = np.floor(pts[0].numpy()[me_map] / 0.005).astype(np.int64)
    ours = {tuple(r) for r in coords[:, 1:].tolist()}
    assert ours == {tuple(r) for r in me_coords.tolist()}
    # both inverse maps induce the same partition of the points
    assert np.array_equal(np.unique(np.stack([inverse.numpy(), np.asarray(me_inv)]), axis=1).shape[1], len(ours))


def test_voxelize_opcheck(rng):
    pts = cloud(rng, 2, 50, 3)
    torch.library.opcheck(torch.ops.pcgrasp.voxelize.default, (pts, 0.1, torch.tensor([50, 20])),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@requires_cuda
def test_voxelize_cuda_matches_cpu(rng):
    pts = cloud(rng, 4, 20000, 3) * 2
    lens = ragged_lengths(4, 20000, rng)
    c = ops.voxelize(pts, 0.005, lens)
    g = ops.voxelize(pts.cuda(), 0.005, lens.cuda())
    for x, y in zip(c, g):
        assert torch.equal(x, y.cpu())


def boundary_points(rng, s, n=4000):
    """float32 points where p * (1 / s) and p / s floor to different voxels (the
    reciprocal shortcut a CUDA tensor / host scalar takes), plus near-boundary
    points around them: the contract is the true quotient, floor(p / s)."""
    s32 = np.float32(s)
    k = rng.integers(-4000, 4000, size=20 * n).astype(np.float32)
    cand = (k * s32 + rng.integers(-3, 4, size=k.shape).astype(np.float32) * np.spacing(k * s32)).astype(np.float32)
    differ = np.floor(cand / s32) != np.floor(cand * (np.float32(1) / s32))
    picked = np.concatenate([cand[differ], cand[~differ]])[: 3 * n]
    assert differ.sum() > 10  # the test needs real boundary cases
    return torch.as_tensor(rng.permutation(picked)[: 3 * (len(picked) // 3)].reshape(1, -1, 3))


@pytest.mark.parametrize("s", [0.005, 0.01, 0.03])
def test_voxelize_is_the_true_quotient_at_voxel_boundaries(rng, s):
    pts = boundary_points(rng, s)
    coords, inverse, _ = ops.voxelize(pts, s)
    want = np.floor(pts[0].numpy() / np.float32(s)).astype(np.int64)
    np.testing.assert_array_equal(coords[inverse, 1:].long().numpy(), want)


@requires_cuda
@pytest.mark.parametrize("s", [0.005, 0.01, 0.03])
def test_voxelize_cuda_is_the_true_quotient(rng, s):
    pts = boundary_points(rng, s)
    want = np.floor(pts[0].numpy() / np.float32(s)).astype(np.int64)
    coords, inverse, _ = ops.voxelize(pts.cuda(), s)
    np.testing.assert_array_equal(coords[inverse, 1:].long().cpu().numpy(), want)
    for x, y in zip(ops.voxelize(pts, s), (coords, inverse, _)):
        assert torch.equal(x, y.cpu())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voxelize_int32_range_is_exact(dtype):
    # quotients in [-2^31, 2^31 - 1] are kept; one step outside raises, never wraps
    lo, hi = -(2.0 ** 31), 2.0 ** 31 - (1 if dtype == torch.float64 else 128)
    ok = torch.tensor([[[lo, 0.0, 0.0], [hi, 1.0, -1.0]]], dtype=dtype)
    coords, _, _ = ops.voxelize(ok, 1.0)
    assert coords[:, 1].tolist() == [int(lo), int(hi)]
    for bad in (2.0 ** 31, -(2.0 ** 31) - (1 if dtype == torch.float64 else 256)):
        with pytest.raises(ValueError, match="overflow"):
            ops.voxelize(torch.tensor([[[0.0, bad, 0.0]]], dtype=dtype), 1.0)
