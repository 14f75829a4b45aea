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
        for i in range(int(lengths[b])):
            rows.append((b, *np.floor(points[b, i] / s).astype(np.int64)))
            flat.append(b * N + i)
    rows = np.array(rows, dtype=np.int64).reshape(-1, 4)
    uniq, inv = np.unique(rows, axis=0, return_inverse=True)  # lexicographic
    inverse = np.full(B * N, -1)
    inverse[flat] = inv.reshape(-1)
    first = np.full(len(uniq), np.iinfo(np.int64).max)
    np.minimum.at(first, inv.reshape(-1), np.array(flat, dtype=np.int64))
    return uniq, inverse, first


@pytest.mark.parametrize("kind", ["uniform", "clustered", "duplicates", "lattice"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voxelize_matches_oracle(rng, kind, dtype):
    B, N = 4, 500
    pts = cloud(rng, B, N, 3, dtype, kind) * 2 - 0.7  # negative coordinates too
    lens = ragged_lengths(B, N, rng)
    for s in (0.005, 0.05, 0.5):
        coords, inverse, first = ops.voxelize(pts, s, lens)
        # the oracle divides in the same dtype (MinkowskiEngine: floor(coords / size))
        wc, wi, wf = voxel_oracle(pts.numpy(), lens, np.array(s, dtype=pts.numpy().dtype))
        assert coords.dtype == torch.int32
        np.testing.assert_array_equal(coords.numpy(), wc)
        np.testing.assert_array_equal(inverse.numpy(), wi)
        np.testing.assert_array_equal(first.numpy(), wf)


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
