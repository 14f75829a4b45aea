"""kernel_map / downsample_coords against naive dictionary-based oracles."""
import itertools

import numpy as np
import pytest
import torch

from pcgrasp import ops
from conftest import DEVICES, requires_cuda


def random_coords(rng, n, batches=3, lo=-6, hi=6, unique=True):
    """Ragged batches (batch sizes differ, some may be empty), negative coordinates."""
    b = rng.integers(0, batches, size=n)
    xyz = rng.integers(lo, hi, size=(n, 3))
    c = np.concatenate([b[:, None], xyz], 1)
    if unique:
        c = np.unique(c, axis=0)
        c = c[rng.permutation(len(c))]  # not sorted: the op must not rely on order
    return torch.as_tensor(c, dtype=torch.int32)


def offsets_oracle(ks, dil, ts):
    """ME's order written out with loops: x fastest, then y, then z."""
    per_axis = []
    for d in range(3):
        if ks[d] % 2:
            per_axis.append([(a - ks[d] // 2) * dil[d] * ts[d] for a in range(ks[d])])
        else:
            per_axis.append([a * ts[d] for a in range(ks[d])])
    return [(x, y, z) for z in per_axis[2] for y in per_axis[1] for x in per_axis[0]]


def kernel_map_oracle(cin, cout, ks, dil, ts):
    table = {}
    for i, row in enumerate(cin.tolist()):
        table.setdefault(tuple(row), []).append(i)
    pairs = []
    for k, (dx, dy, dz) in enumerate(offsets_oracle(ks, dil, ts)):
        for o, (b, x, y, z) in enumerate(cout.tolist()):
            for i in table.get((b, x + dx, y + dy, z + dz), []):
                pairs.append((k, o, i))
    return pairs


def as_pairs(in_idx, out_idx, counts):
    ks = np.repeat(np.arange(len(counts)), counts.cpu().numpy())
    return list(zip(ks.tolist(), out_idx.cpu().tolist(), in_idx.cpu().tolist()))


def as3(v):
    return [v] * 3 if isinstance(v, int) else list(v)


def test_kernel_offsets_conventions():
    o = ops.kernel_offsets(3)
    assert o.shape == (27, 3)
    assert o[13].tolist() == [0, 0, 0]  # centre of a 3^3 kernel
    assert o[0].tolist() == [-1, -1, -1] and o[1].tolist() == [0, -1, -1] and o[3].tolist() == [-1, 0, -1]
    assert o[9].tolist() == [-1, -1, 0]  # x fastest, then y, then z
    assert ops.kernel_offsets(2, tensor_stride=4).tolist() == [
        [0, 0, 0], [4, 0, 0], [0, 4, 0], [4, 4, 0], [0, 0, 4], [4, 0, 4], [0, 4, 4], [4, 4, 4]]
    assert ops.kernel_offsets(3, dilation=2, tensor_stride=2)[0].tolist() == [-4, -4, -4]
    for ks, dil, ts in [(5, 1, 1), ((3, 2, 1), (2, 1, 3), (1, 2, 4)), (4, 3, 2)]:
        assert ops.kernel_offsets(ks, dil, ts).tolist() == [list(t) for t in
                                                            offsets_oracle(as3(ks), as3(dil), as3(ts))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ks,dil,ts", [(3, 1, 1), (1, 1, 1), (2, 1, 1), (2, 1, 4), (5, 1, 2), (3, 2, 2),
                                       ((3, 2, 1), (1, 1, 2), (2, 1, 1)), (4, 1, 1)])
def test_kernel_map_matches_oracle(rng, device, ks, dil, ts):
    cin = random_coords(rng, 300)
    cout = torch.cat([cin[:40], random_coords(rng, 60)])  # hits and misses, other batch counts
    got = ops.kernel_map(cin.to(device), cout.to(device), ks, dil, ts)
    assert all(t.dtype == torch.int64 for t in got)
    assert got[2].shape == (np.prod(as3(ks)),)
    assert as_pairs(*got) == kernel_map_oracle(cin, cout, as3(ks), as3(dil), as3(ts))


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_map_duplicates_give_every_pair(rng, device):
    cin = random_coords(rng, 80, batches=2, lo=-2, hi=2, unique=False)  # many repeated rows
    cout = random_coords(rng, 30, batches=2, lo=-2, hi=2)
    got = ops.kernel_map(cin.to(device), cout.to(device), 3)
    assert as_pairs(*got) == kernel_map_oracle(cin, cout, [3] * 3, [1] * 3, [1] * 3)


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_map_empty(device):
    e = torch.empty(0, 4, dtype=torch.int32, device=device)
    c = torch.tensor([[0, 1, 2, 3]], dtype=torch.int32, device=device)
    for a, b in [(e, e), (e, c), (c, e)]:
        i, o, n = ops.kernel_map(a, b, 3)
        assert i.numel() == 0 and o.numel() == 0 and n.tolist() == [0] * 27


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_map_int32_limits(device):
    """Offsets near the int32 limits are added in int64: no wrap-around matches."""
    big, small = 2**31 - 1, -(2**31)
    cin = torch.tensor([[0, big, 0, 0], [0, small, 0, 0], [0, big - 1, small, small + 1]], dtype=torch.int32)
    cout = torch.tensor([[0, big, 0, 0], [0, small, 0, 0], [0, big, small + 1, small]], dtype=torch.int32)
    got = ops.kernel_map(cin.to(device), cout.to(device), 3)
    assert as_pairs(*got) == kernel_map_oracle(cin, cout, [3] * 3, [1] * 3, [1] * 3)
    got = ops.kernel_map(cin.to(device), cout.to(device), 3, dilation=2**30, tensor_stride=2**30)
    assert as_pairs(*got) == kernel_map_oracle(cin, cout, [3] * 3, [2**30] * 3, [2**30] * 3)


def downsample_oracle(c, s):
    rows = [(b, (x // s[0]) * s[0], (y // s[1]) * s[1], (z // s[2]) * s[2]) for b, x, y, z in c.tolist()]
    uniq = sorted(set(rows))
    where = {r: j for j, r in enumerate(uniq)}
    return uniq, [where[r] for r in rows]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stride", [1, 2, 3, 8, (2, 4, 1)])
def test_downsample_matches_oracle(rng, device, stride):
    c = random_coords(rng, 400, lo=-17, hi=17)
    out, inv = ops.downsample_coords(c.to(device), stride)
    uniq, inverse = downsample_oracle(c, as3(stride))  # Python's // floors negatives
    assert out.dtype == torch.int32 and inv.dtype == torch.int64
    assert out.cpu().tolist() == [list(r) for r in uniq]
    assert inv.cpu().tolist() == inverse


def test_downsample_negative_floor_and_empty():
    c = torch.tensor([[0, -1, -2, -3], [0, 1, 2, 3], [1, -4, 0, 3]], dtype=torch.int32)
    out, inv = ops.downsample_coords(c, 4)
    assert out.tolist() == [[0, -4, -4, -4], [0, 0, 0, 0], [1, -4, 0, 0]]
    assert inv.tolist() == [0, 1, 2]
    out, inv = ops.downsample_coords(torch.empty(0, 4, dtype=torch.int32), 2)
    assert out.shape == (0, 4) and inv.shape == (0,)


def test_downsample_overflow_is_an_error():
    c = torch.tensor([[0, -(2**31) + 1, 0, 0]], dtype=torch.int32)
    assert ops.downsample_coords(c, 4)[0].tolist() == [[0, -(2**31), 0, 0]]  # still fits
    with pytest.raises(RuntimeError, match="overflow int32"):
        ops.downsample_coords(c, 3)  # floor(x / 3) * 3 = -2^31 - 1


def test_malformed_arguments():
    c = torch.zeros(3, 4, dtype=torch.int32)
    with pytest.raises(ValueError, match="in_coords"):
        ops.kernel_map(c[:, :3], c, 3)
    with pytest.raises(TypeError, match="out_coords"):
        ops.kernel_map(c, c.long(), 3)
    with pytest.raises(TypeError, match="in_coords"):
        ops.kernel_map(c.numpy(), c, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        ops.kernel_map(c, c, 0)
    with pytest.raises(TypeError, match="kernel_size"):
        ops.kernel_map(c, c, 2.5)
    with pytest.raises(TypeError, match="dilation"):
        ops.kernel_map(c, c, 3, dilation=(1, 2))
    with pytest.raises(ValueError, match="tensor_stride"):
        ops.kernel_map(c, c, 3, tensor_stride=-2)
    with pytest.raises(ValueError, match="kernel_size volume"):
        ops.kernel_map(c, c, 200)
    with pytest.raises(ValueError, match="stride"):
        ops.downsample_coords(c, 0)
    with pytest.raises(ValueError, match="coords"):
        ops.downsample_coords(c.reshape(-1), 2)
    # the C++ checks are the second line for direct calls
    with pytest.raises(RuntimeError, match="kernel_size"):
        torch.ops.pcgrasp.kernel_map(c, c, [3, 3], [1, 1, 1], [1, 1, 1])
    with pytest.raises(RuntimeError, match="in_coords"):
        torch.ops.pcgrasp.kernel_map(c.long(), c, [3, 3, 3], [1, 1, 1], [1, 1, 1])
    with pytest.raises(RuntimeError, match="kernel_size volume"):
        torch.ops.pcgrasp.kernel_map(c, c, [2**31 - 1] * 3, [1, 1, 1], [1, 1, 1])
    with pytest.raises(RuntimeError, match="stride"):
        torch.ops.pcgrasp.downsample_coords(c, [0, 1, 1])


def test_opcheck(rng):
    cin = random_coords(rng, 50)
    torch.library.opcheck(torch.ops.pcgrasp.kernel_map.default, (cin, cin[:20], [3, 3, 3], [1, 1, 1], [1, 1, 1]))
    torch.library.opcheck(torch.ops.pcgrasp.downsample_coords.default, (cin, [2, 2, 2]))


@requires_cuda
def test_cuda_matches_cpu(rng):
    cin = random_coords(rng, 5000, batches=4, lo=-30, hi=30)
    cout, _ = ops.downsample_coords(cin, 2)
    for args in [(cin, cin, 3, 1, 1), (cin, cout, 2, 1, 1), (cin, cin, 5, 2, 1)]:
        a = ops.kernel_map(*args)
        b = ops.kernel_map(args[0].cuda(), args[1].cuda(), *args[2:])
        for x, y in zip(a, b):
            assert torch.equal(x, y.cpu())
