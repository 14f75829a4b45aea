"""MinkUNet14D (GSNet's, 3 -> 512) forward + backward on a 20000-point scene at 5 mm voxels:
pcgrasp.nn against MinkowskiEngine in the same process when ME imports (same weights, same input).

    python benchmarks/bench_sparse.py [--device cpu|cuda] [--points 20000] [--voxel 0.005] [--only NAME]
                                      [--out DIR] [--budget-s S]

Writes JSON + markdown under benchmarks/results/ (or --out; <device>-sparse.*). Medians; ratio = peer / pcgrasp.
"""
import argparse
import math
import os
import sys

import numpy as np
import torch

import pcgrasp.nn as snn
from pcgrasp.models import MinkUNet14D

from _common import add_budget_arg, device_name, optional_import, run_cases, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
ME = optional_import("MinkowskiEngine")


def scene(n, seed=0):
    """A tabletop: a 0.6 m x 0.6 m plane and 6 boxes' and spheres' surfaces, camera frame
    (negative coordinates), n points."""
    rng = np.random.default_rng(seed)
    parts = [np.c_[rng.uniform(-0.3, 0.3, (n // 2, 2)), np.full(n // 2, -0.02)]]
    per = (n - n // 2) // 6
    for j in range(6):
        c = np.r_[rng.uniform(-0.2, 0.2, 2), 0.05]
        if j % 2:
            d = rng.normal(size=(per, 3))
            parts.append(c + 0.05 * d / np.linalg.norm(d, axis=1, keepdims=True))
        else:
            p = rng.uniform(-0.04, 0.04, (per, 3))
            ax = rng.integers(0, 3, per)
            p[np.arange(per), ax] = np.sign(rng.normal(size=per)) * 0.04
            parts.append(c + p)
    pts = np.concatenate(parts)[:n]
    pts = np.r_[pts, rng.uniform(-0.3, 0.3, (n - len(pts), 3))] - [0, 0, 0.6]
    return torch.as_tensor(pts, dtype=torch.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--voxel", type=float, default=0.005)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per timed callable")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    add_budget_arg(ap)
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    pts = scene(args.points).to(dev)
    x, inverse = snn.sparse_tensor_from_points(pts[None], torch.ones(1, len(pts), 3, device=dev), args.voxel)
    V = len(x)
    model = MinkUNet14D(3, 512).to(dev).train()
    sd = model.state_dict()

    def ours(backward):
        def run():
            y = model(snn.SparseTensor(x.F, x.C))  # a fresh coordinate manager, as in training
            if backward:
                model.zero_grad(set_to_none=True)
                y.F.square().mean().backward()
        return run

    peers_f, peers_b = {}, {}
    if ME is not None and dev.type == "cpu":
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
        from _minkowski_unet import MEMinkUNet14D
        me_model = MEMinkUNet14D(3, 512, model.planes)
        me_model.load_state_dict(sd, strict=True)
        me_model.train()

        def me(backward):
            def run():
                y = me_model(ME.SparseTensor(x.F, coordinates=x.C))
                if backward:
                    me_model.zero_grad(set_to_none=True)
                    y.F.square().mean().backward()
            return run
        peers_f["MinkowskiEngine"], peers_b["MinkowskiEngine"] = me(False), me(True)

    def peak():
        if dev.type != "cuda":
            return ""
        m = torch.cuda.max_memory_allocated(dev) / 2**20
        torch.cuda.reset_peak_memory_stats(dev)
        return f"peak CUDA memory {m:.0f} MiB"

    note = f"{args.points} points, {args.voxel * 1e3:g} mm voxels -> {V} voxels"
    cases = [
        {"name": "minkunet14d_512_forward", "ours": ours(False), "peers": peers_f, "notes": note, "after": peak},
        {"name": "minkunet14d_512_forward_backward", "ours": ours(True), "peers": peers_b, "notes": note,
         "after": peak},
    ]
    dname = device_name(dev)
    stats = {}
    res = run_cases(cases, dev, args.budget, args.only, args.budget_s, stats)
    meta = {"points": args.points, "voxel": args.voxel, "voxels": V,
            "minkowski": getattr(ME, "__version__", None), "threads": torch.get_num_threads(), **stats}
    write_results(args.out, bool(args.only or stats["stopped"]), dname, res, meta,
                  title="Sparse backbone (MinkUNet14D)", stem="sparse")


if __name__ == "__main__":
    main()
