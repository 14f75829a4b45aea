"""Label-generation speed against plain NumPy versions in the same process:

- graspness transfer per frame (every workspace point takes its nearest label
  point's graspness, min-max): ``labels.scene_labels.transfer_graspness``
  (``pcgrasp.ops.knn``) against GSNet's brute force written in NumPy (chunks
  of 10,000 cloud points);
- model-free collision of one label point's 300 x 12 x 4 grasps with the
  scene points near it: ``geometry.collision.model_free_collision`` (torch,
  float64 and float32) against GSNet's ``ModelFreeCollisionDetector`` masks
  written in NumPy (broadcast over grasps x points).

    python benchmarks/bench_labels.py [--device cpu|cuda] [--quick]

Writes benchmarks/results/<device>-labels.{json,md}.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import device_name, run_cases, write_results  # noqa: E402

from pcgrasp.geometry.collision import model_free_collision  # noqa: E402
from pcgrasp.labels.grasp_labels import grasp_grid  # noqa: E402
from pcgrasp.labels.scene_labels import transfer_graspness  # noqa: E402


def numpy_transfer(cloud, label_points, graspness):
    out = np.zeros(len(cloud))
    for s in range(0, len(cloud), 10000):
        c = cloud[s:s + 10000]
        d2 = ((c[:, None, :] - label_points[None]) ** 2).sum(-1)
        out[s:s + 10000] = graspness[d2.argmin(1)]
    return (out - out.min()) / (out.max() - out.min())


def numpy_model_free(points, t, R, w, d, h=0.02, f=0.01, L=0.06, a=0.05, chunk=256):
    out = np.zeros(len(t), bool)
    for s in range(0, len(t), chunk):
        q = np.matmul(points[None] - t[s:s + chunk, None], R[s:s + chunk])
        x, y, z = q[..., 0], q[..., 1], q[..., 2]
        dd, hw = d[s:s + chunk, None], w[s:s + chunk, None] / 2
        m1 = (z > -h / 2) & (z < h / 2)
        m3, m5 = y > -(hw + f), y < hw + f
        fingers = m1 & (x > dd - L) & (x < dd) & ((m3 & (y < -hw)) | (m5 & (y > hw)))
        bottom = m1 & m3 & m5 & (x <= dd - L) & (x > dd - L - f)
        shift = m1 & m3 & m5 & (x <= dd - L - f) & (x > dd - L - f - a)
        out[s:s + chunk] = (fingers | bottom | shift).any(1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--budget", type=float, default=20.0)
    a = ap.parse_args()
    dev = torch.device(a.device)
    rng = np.random.default_rng(0)
    cases = []
    sizes = [(20000, 2400)] if a.quick else [(20000, 2400), (100000, 2400)]
    for P, L in sizes:
        cloud = rng.uniform(-0.2, 0.2, (P, 3)).astype(np.float32)
        lp = rng.uniform(-0.2, 0.2, (L, 3)).astype(np.float32)
        g = rng.random(L)
        np.testing.assert_allclose(transfer_graspness(cloud, lp, g, device=dev), numpy_transfer(cloud, lp, g),
                                   atol=1e-6)
        cases.append({"name": f"graspness transfer, {P} cloud points, {L} label points",
                      "ours": lambda c=cloud, p=lp, g=g: transfer_graspness(c, p, g, device=dev),
                      "peers": {"numpy GSNet brute force": lambda c=cloud, p=lp, g=g: numpy_transfer(c, p, g)}})
    views = range(0, 300, 10) if a.quick else None
    t, R, d, _ = grasp_grid(np.zeros((1, 3)), views)
    w = rng.uniform(0.02, 0.1, len(t))
    K = 4000
    near = rng.uniform(-0.12, 0.12, (K, 3))
    near[:, 2] *= 0.2
    want = numpy_model_free(near, t, R, w, d)
    assert (model_free_collision(near, t, R, w, d, device=dev) == want).all()
    for dt in (torch.float64, torch.float32):
        cases.append({"name": f"model-free collision, {len(t)} grasps x {K} points, {str(dt)[6:]}",
                      "ours": lambda dt=dt: model_free_collision(near, t, R, w, d, dtype=dt, device=dev),
                      "peers": {"numpy GSNet masks": lambda: numpy_model_free(near, t, R, w, d)}})
    dname = device_name(dev)
    results = run_cases(cases, dev, a.budget)
    write_results(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"), False, dname, results,
                  {"quick": a.quick}, title="Label generation", stem="labels")


if __name__ == "__main__":
    main()
