"""nearest_neighbor_order and the ragged helpers against plain Python."""
import numpy as np
import pytest
import torch

from pcgrasp import ops
from conftest import DEVICES, cloud, ragged_lengths, requires_cuda


def order_oracle(c, n):
    if n == 0:
        return []
    c = c[:n]
    s = (c[:, 0] + c[:, 1]) + c[:, 2]
    cur = int(np.argmin(s))  # first minimum: lowest index
    out, used = [cur], {cur}
    for _ in range(n - 1):
        d = ((c - c[cur]) ** 2).sum(-1)
        d[list(used)] = np.inf
        cur = int(np.argmin(d))
        out.append(cur)
        used.add(cur)
    return out


@pytest.mark.parametrize("kind", ["uniform", "lattice", "duplicates", "clustered"])
def test_nearest_neighbor_order_matches_oracle(rng, kind):
    B, G = 6, 64
    c = cloud(rng, B, G, 3, torch.float64, kind)
    lens = ragged_lengths(B, G, rng)
    got = ops.nearest_neighbor_order(c, lengths=lens)
    for b in range(B):
        n = int(lens[b])
        assert got[b, :n].tolist() == order_oracle(c[b].numpy(), n)
        assert (got[b, n:] == -1).all()


def test_sequencer_opcheck(rng):
    c = cloud(rng, 3, 20, 3)
    torch.library.opcheck(torch.ops.pcgrasp.nearest_neighbor_order.default, (c, torch.tensor([20, 5, 0])))


def test_masked_to_padded_round_trip(rng):
    x = torch.randn(3, 10, 4)
    mask = torch.as_tensor(rng.random((3, 10)) > 0.5)
    mask[2] = False
    padded, lengths, index = ops.masked_to_padded(x, mask, return_index=True)
    assert lengths.tolist() == mask.sum(1).tolist()
    for b in range(3):
        n = int(lengths[b])
        keep = torch.nonzero(mask[b]).squeeze(1)
        assert torch.equal(index[b, :n], keep) and (index[b, n:] == -1).all()
        assert torch.equal(padded[b, :n], x[b, keep]) and (padded[b, n:] == 0).all()
    packed = ops.padded_to_packed(padded, lengths)
    assert torch.equal(packed, x[mask])
    assert torch.equal(ops.packed_to_padded(packed, lengths), padded)


def test_fps_on_graspable_points_in_one_call(rng):
    """GSNet: FPS of k seeds from each sample's graspable points, no Python loop."""
    B, N, k = 4, 400, 32
    pts = cloud(rng, B, N, 3)
    graspable = torch.as_tensor(rng.random((B, N)) > 0.6)
    graspable[3, :] = False
    graspable[3, :10] = True  # fewer graspable points than seeds
    padded, lengths, index = ops.masked_to_padded(pts, graspable, return_index=True)
    seeds = ops.farthest_point_sample(padded, k, lengths=lengths)
    seed_idx = torch.where(seeds >= 0, index.gather(1, seeds.clamp(min=0)), torch.full_like(seeds, -1))
    for b in range(B):
        # same as running FPS on that sample's graspable points alone
        own = torch.nonzero(graspable[b]).squeeze(1)
        alone = ops.farthest_point_sample(pts[b:b + 1, own], k)[0]
        want = torch.where(alone >= 0, own[alone.clamp(min=0)], torch.full_like(alone, -1))
        assert torch.equal(seed_idx[b], want)
        assert graspable[b, seed_idx[b][seed_idx[b] >= 0]].all()


@requires_cuda
def test_sequencer_cuda_matches_cpu(rng):
    c = cloud(rng, 512, 64, 3, torch.float32, "lattice")
    assert torch.equal(ops.nearest_neighbor_order(c), ops.nearest_neighbor_order(c.cuda()).cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_nearest_neighbor_order_non_finite_centres_with_checks_off_stay_a_permutation(rng, device):
    """With value checks off, NaN / inf centres give an unspecified order, but each row is still a
    permutation of its cloud's indices, padded with -1 (the CUDA kernel could pick index n, and
    write past its row, when every distance left was NaN)."""
    old = ops.set_data_checks(False)
    try:
        for trial in range(40):
            B, G = int(rng.integers(1, 4)), int(rng.integers(1, 300))
            c = torch.as_tensor(rng.random((B, G, 3)), dtype=torch.float64 if trial % 3 == 0 else torch.float32)
            c[torch.as_tensor(rng.random((B, G)) < rng.random())] = float("nan") if trial % 4 else float("inf")
            lengths = torch.as_tensor(rng.integers(0, G + 1, B))
            got = ops.nearest_neighbor_order(c.to(device), lengths=lengths.to(device)).cpu()
            for b in range(B):
                n = int(lengths[b])
                assert sorted(got[b, :n].tolist()) == list(range(n)) and got[b, n:].tolist() == [-1] * (G - n)
    finally:
        ops.set_data_checks(old)
