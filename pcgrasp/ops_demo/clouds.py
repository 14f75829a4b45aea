"""Built-in synthetic point clouds (no download needed): surfaces of random
primitives (spheres, boxes, cylinders, tori) with random proportions, poses
and ragged point counts, as a padded batch [B, N, 3] plus lengths [B]."""
import math

import torch


def _unit(v):
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _sphere(n, g):
    return _unit(torch.randn(n, 3, generator=g))


def _box(n, g):
    p = torch.rand(n, 3, generator=g) * 2 - 1
    axis = torch.randint(0, 3, (n,), generator=g)
    side = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    p[torch.arange(n), axis] = side
    return p


def _cylinder(n, g):
    t = torch.rand(n, generator=g) * 2 * math.pi
    z = torch.rand(n, generator=g) * 2 - 1
    return torch.stack([t.cos(), t.sin(), z], -1)


def _torus(n, g):
    u = torch.rand(n, generator=g) * 2 * math.pi
    v = torch.rand(n, generator=g) * 2 * math.pi
    r = 0.35
    return torch.stack([(1 + r * v.cos()) * u.cos(), (1 + r * v.cos()) * u.sin(), r * v.sin()], -1)


SHAPES = {"sphere": _sphere, "box": _box, "cylinder": _cylinder, "torus": _torus}


def random_rotation(g):
    q = _unit(torch.randn(4, generator=g))
    w, x, y, z = q.tolist()
    return torch.tensor([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def object_clouds(batch, max_points, min_points=None, seed=0, dtype=torch.float32):
    """Returns (points [B, N, 3], lengths [B], labels [B]) of random primitives
    scaled into roughly a 0.2 m box (object scale), padded with zeros."""
    g = torch.Generator().manual_seed(seed)
    min_points = max_points // 2 if min_points is None else min_points
    names = list(SHAPES)
    pts = torch.zeros(batch, max_points, 3)
    lengths = torch.randint(min_points, max_points + 1, (batch,), generator=g)
    labels = torch.randint(0, len(names), (batch,), generator=g)
    for b in range(batch):
        n = int(lengths[b])
        p = SHAPES[names[labels[b]]](n, g)
        p = p * (0.03 + 0.07 * torch.rand(3, generator=g))  # random proportions
        p = p @ random_rotation(g).T + 0.02 * torch.randn(3, generator=g)
        pts[b, :n] = p
    return pts.to(dtype), lengths, labels
