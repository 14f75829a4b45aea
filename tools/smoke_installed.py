#!/usr/bin/env python3
"""What a user runs first after ``pip install pcgrasp`` (non-editable), from outside the checkout:
the package imports from site-packages, every op runs once, every CLI command answers ``--help``,
and one small end-to-end command (synthetic Dex-Net crops, then an energy model trained for an
epoch) runs. tools/wheel-check.sh runs it in a fresh virtual environment; it exits non-zero on
the first failure."""
import os
import subprocess
import tempfile

import torch

import pcgrasp
from pcgrasp import ops


def check(cond, what):
    if not cond:
        raise SystemExit(f"smoke: FAILED: {what}")
    print(f"smoke: ok: {what}", flush=True)


def installed():
    here = os.path.dirname(os.path.abspath(pcgrasp.__file__))
    check("site-packages" in here, f"pcgrasp imports from site-packages ({here})")
    check(not os.path.exists(os.path.join(here, "..", "setup.py")), "not from a source checkout")
    info = pcgrasp.build_info()
    print("smoke: build_info", info)
    for sub in ("cli", "data", "data.synthetic", "eval", "labels", "models", "nn", "ops", "train",
                "train.engine", "train.jepa", "train.contrast", "train.detector", "train.detector_eval", "train.detector_sweep", "train.ebm", "train.sweep"):
        __import__(f"pcgrasp.{sub}")
    check(True, "every subpackage imports")
    cfgs = os.listdir(os.path.join(os.path.dirname(pcgrasp.__file__), "configs"))
    check(len([c for c in cfgs if c.endswith(".yaml")]) >= 10, f"packaged configs ({len(cfgs)})")


class _Recorder:
    """``pcgrasp.ops`` that remembers which names were used."""

    def __init__(self):
        self.used = set()

    def __getattr__(self, name):
        self.used.add(name)
        return getattr(ops, name)


def every_op():
    op = _Recorder()
    g = torch.Generator().manual_seed(0)
    p = torch.rand(2, 64, 3, generator=g)
    q = torch.rand(2, 16, 3, generator=g)
    lengths = torch.tensor([64, 40])
    idx = op.farthest_point_sample(p, 16, lengths)
    d, nn_idx = op.knn(q, p, 4, lengths=lengths)
    d3, i3 = op.three_nn(q, p, lengths=lengths)
    w = op.inverse_distance_weights(d3)
    feats = torch.rand(2, 64, 5, generator=g)
    op.three_interpolate(feats, i3, w)
    op.ball_query(q, p, 0.3, 8, lengths=lengths)
    got = op.gather_points(feats, idx)
    op.scatter_add_points(got, idx, 64)
    rot = torch.eye(3).expand(2, 16, 3, 3).contiguous()
    op.cylinder_query(q, rot, p, 0.1, -0.02, 0.04, 8, lengths=lengths)
    op.correspondences(p, p, 0.05)
    op.radius_pairs(q, p, 0.2)
    op.false_negative_mask(q, 0.1)
    fa = torch.randn(2, 16, 8, generator=g, requires_grad=True)
    loss = op.point_info_nce(fa, torch.randn(2, 16, 8, generator=g), q, gamma=0.05)
    loss.backward()
    coords, inverse, first = op.voxelize(p, 0.1, lengths)
    op.kernel_offsets(3)
    in_idx, out_idx, counts = op.kernel_map(coords, coords, 3)
    counts = counts.tolist()
    cf = torch.rand(coords.shape[0], 5, generator=g)
    wt = torch.rand(len(counts), 5, 4, generator=g)
    out = op.sparse_conv_pairs(cf, wt, in_idx, out_idx, counts, coords.shape[0])
    naive = torch.zeros_like(out).index_add_(0, out_idx, torch.bmm(
        cf[in_idx].unsqueeze(1), wt.repeat_interleave(torch.tensor(counts), 0)).squeeze(1))
    check(torch.allclose(out, naive, atol=1e-5), "sparse_conv_pairs matches a gather-matmul-scatter")
    op.sparse_conv_weight_grad(cf, out, in_idx, out_idx, counts)
    op.transpose_kernel_map(in_idx, out_idx, counts, coords.shape[0])
    op.downsample_coords(coords, 2)
    op.nearest_neighbor_order(q)
    packed = op.padded_to_packed(p, lengths)
    op.packed_to_padded(packed, lengths)
    op.masked_to_padded(p, torch.rand(2, 64, generator=g) > 0.5)
    check(op.host_to_device(counts, "cpu", torch.int64).tolist() == counts, "host_to_device copies host values")
    with op.data_checks(True):
        op.set_data_checks(True)
    missed = set(ops.__all__) - op.used
    check(not missed, f"every name in pcgrasp.ops.__all__ ran ({len(op.used)}; missed: {sorted(missed)})")
    import pcgrasp.nn as pnn

    x, _ = pnn.sparse_tensor_from_points(p, feats, 0.1, lengths)
    y = pnn.SparseConv3d(5, 4, kernel_size=3)(x)
    check(y.F.shape == (len(x), 4), "pcgrasp.nn sparse convolution")


def every_help():
    from pcgrasp.cli import command_paths

    paths = command_paths()
    for path in paths:
        r = subprocess.run(["pcgrasp", *path, "--help"], capture_output=True, text=True, timeout=120)
        check(r.returncode == 0 and "usage:" in r.stdout, f"pcgrasp {' '.join(path)} --help")
    check(len(paths) >= 15, f"{len(paths)} commands")


def end_to_end():
    with tempfile.TemporaryDirectory() as d:
        over = [f"data.root={d}/dexnet", "data.generate.images=4", "data.generate.grasps_per_image=10",
                "data.generate.candidates=60", "data.generate.perturbations=1", "data.val_fraction=0.5",
                "model.repeat=8", "model.hidden=[16]", "train.epochs=1", "train.batch_size=16",
                f"train.out={d}/train", "device=cpu"]
        r = subprocess.run(["pcgrasp", "ebm", "train", "--quiet", *over], cwd=d, capture_output=True,
                           text=True, timeout=600)
        print(r.stdout[-1500:], r.stderr[-1500:])
        check(r.returncode == 0, "pcgrasp ebm train (synthetic Dex-Net crops, one epoch)")
        r = subprocess.run(["pcgrasp", "evaluate", "--checkpoint", f"{d}/missing.pt"], cwd=d, capture_output=True,
                           text=True, timeout=120)
        check(r.returncode == 2 and "--checkpoint" in r.stderr and "Traceback" not in r.stderr,
              "a bad argument is one line")


if __name__ == "__main__":
    installed()
    every_op()
    every_help()
    end_to_end()
    print("smoke: all passed")
