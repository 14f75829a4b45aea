"""The main job on the built-in synthetic default: a PointNet++-style
encoder/decoder pass (FPS -> ball query / kNN grouping -> gather ->
feature propagation) over a batch of procedural object clouds, each op
checked against a brute-force PyTorch computation and timed.

    python -m pcgrasp.ops_demo [--batch 32] [--points 4096] [--device cpu|cuda]

The clouds are built in (``clouds.object_clouds``: random primitives), so it needs no data.
"""
import argparse
import time

import torch

import pcgrasp
from pcgrasp import ops
from .clouds import object_clouds


def _timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, (time.perf_counter() - t) * 1e3


def _brute_knn(q, p, n, k):
    d = ((q[:, None] - p[None, :n]) ** 2).sum(-1)
    return d.topk(min(k, n), largest=False).values


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--points", type=int, default=4096)
    ap.add_argument("--centres", type=int, default=512)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--radius", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() and pcgrasp.build_info()["cuda_built"] else "cpu")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)

    points, lengths, labels = object_clouds(a.batch, a.points, seed=a.seed)
    points, lengths = points.to(dev), lengths.to(dev)
    feats = torch.cat([points, torch.randn(a.batch, a.points, 13, generator=torch.Generator().manual_seed(1)).to(dev)], -1)
    feats.requires_grad_()
    print(f"pcgrasp {pcgrasp.__version__} | device {dev} | {a.batch} synthetic objects, "
          f"{int(lengths.min())}-{int(lengths.max())} points each (ragged)")

    rows = []
    idx, ms = _timed(lambda: ops.farthest_point_sample(points, a.centres, lengths=lengths), dev)
    rows.append(("farthest_point_sample", ms))
    centres, ms = _timed(lambda: ops.gather_points(points, idx), dev)
    rows.append(("gather_points (centres)", ms))
    (bidx, bd2, bcount), ms = _timed(lambda: ops.ball_query(centres, points, a.radius, a.k, lengths=lengths,
                                                            order="first", pad="first"), dev)
    rows.append((f"ball_query r={a.radius} k={a.k}", ms))
    (kd2, kidx), ms = _timed(lambda: ops.knn(centres, points, a.k, lengths=lengths), dev)
    rows.append((f"knn k={a.k}", ms))
    grouped, ms = _timed(lambda: ops.gather_points(feats, kidx), dev)
    rows.append(("gather_points (groups)", ms))
    pooled = (grouped - ops.gather_points(feats, idx).unsqueeze(2)).amax(2)  # PointNet max-pool
    (nd2, nidx), ms = _timed(lambda: ops.three_nn(points, centres, lengths=torch.full_like(lengths, a.centres)), dev)
    rows.append(("three_nn", ms))
    up, ms = _timed(lambda: ops.three_interpolate(pooled, nidx, ops.inverse_distance_weights(nd2)), dev)
    rows.append(("three_interpolate", ms))
    _, ms = _timed(lambda: up.square().mean().backward(), dev)
    rows.append(("backward (gather + interpolate)", ms))

    # independent checks on a few clouds
    worst = 0.0
    for b in range(min(4, a.batch)):
        n = int(lengths[b])
        d = torch.cdist(centres[b].double(), points[b, :n].double()) ** 2
        # FPS: every centre is a real point and they are distinct
        assert len(set(idx[b].tolist())) == a.centres and int(idx[b].max()) < n
        want = _brute_knn(centres[b].double(), points[b].double(), n, a.k)
        worst = max(worst, float((kd2[b].double() - want).abs().max()))
        inside = (d < a.radius ** 2).sum(1).clamp(max=a.k)
        assert torch.equal(bcount[b].cpu(), inside.cpu()), "ball_query count mismatch"
    print(f"checks: FPS distinct & in range, ball_query counts exact, knn max |dist2 error| = {worst:.2e}")
    print()
    print("| step | ms |")
    print("|---|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")
    print()
    print(f"mean ball-query hits per centre: {bcount.float().mean():.1f}/{a.k}; "
          f"feature grad norm {feats.grad.norm():.3f}")

