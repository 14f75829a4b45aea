"""MinkUNet14D (GSNet's, 3 -> 512) forward + backward on a 20000-point scene at 5 mm voxels:
pcgrasp.nn (fused kernels) against MinkowskiEngine (when it imports: `make minkowski`) and against
pcgrasp's own pure-torch reference convolution (nn.sparse_conv_reference), in the same process,
same weights, same input. On CUDA the step runs under bf16 autocast (as GSNet training would) unless
--dtype float32.

Peak memory: CUDA, torch's peak allocation per case; CPU (--memory, default on), each
implementation's first forward + backward in a fresh child process, peak resident memory above
what the process held before the step (Linux: /proc/self/clear_refs resets the high-water mark),
median of 3 processes; again with MALLOC_MMAP_THRESHOLD_ fixed, which shows the memory live at once
without glibc's retention of freed heap blocks.

    python benchmarks/bench_sparse.py [--device cpu|cuda] [--points 20000] [--voxel 0.005] [--only NAME]
                                      [--dtype bf16|float32] [--no-memory] [--out DIR] [--budget-s S]

Writes JSON + markdown under benchmarks/results/ (or --out; <device>-sparse.*). Medians; ratio = peer / pcgrasp.
"""
import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
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


def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def build(args, dev):
    pts = scene(args.points).to(dev)
    x, _ = snn.sparse_tensor_from_points(pts[None], torch.ones(1, len(pts), 3, device=dev), args.voxel)
    torch.manual_seed(0)
    model = MinkUNet14D(3, 512).to(dev).train()
    return x, model


def runner(impl, x, model, backward, autocast_dtype):
    """One forward (+ backward) of implementation impl: 'pcgrasp', 'reference' or 'MinkowskiEngine'."""
    dev = x.device
    amp = (lambda: torch.autocast(dev.type, dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext
    if impl == "MinkowskiEngine":
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
        from _minkowski_unet import MEMinkUNet14D
        net = MEMinkUNet14D(3, 512, model.planes)
        net.load_state_dict(model.state_dict(), strict=True)
        net.train()

        def fwd():
            return net(ME.SparseTensor(x.F, coordinates=x.C)).F
    else:
        net = model

        def fwd():
            return model(snn.SparseTensor(x.F, x.C)).F  # a fresh coordinate manager, as in training

    def run():
        patch = contextlib.nullcontext()
        if impl == "reference":
            from unittest import mock
            patch = mock.patch("pcgrasp.nn.modules.sparse_conv", snn.sparse_conv_reference)
        with patch, amp():
            y = fwd()
        if backward:
            net.zero_grad(set_to_none=True)
            y.float().square().mean().backward()
    return run


def peak_child(args):
    """--peak IMPL: in a fresh process, the peak RSS of its first forward + backward above the RSS
    before it (a warm-up step would leave freed pages resident in the allocator for some
    implementations and not others, so the first step is the comparable one)."""
    dev = torch.device(args.device)
    x, model = build(args, dev)
    run = runner(args.peak, x, model, True, None)
    before = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    run()
    print(json.dumps({"peak_mib": (_rss_kib("VmHWM") - before) / 1024}))


def cpu_peaks(args, impls, reps=3, env=None):
    """Median over `reps` fresh child processes of each implementation's peak RSS (MiB)."""
    out = {}
    for impl in impls:
        cmd = [sys.executable, os.path.abspath(__file__), "--device", "cpu", "--points", str(args.points),
               "--voxel", str(args.voxel), "--peak", impl]
        try:
            vals = []
            for _ in range(reps):
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True,
                                   env={**os.environ, **(env or {})})
                vals.append(json.loads(r.stdout.strip().splitlines()[-1])["peak_mib"])
            out[impl] = round(statistics.median(vals), 1)
        except Exception as e:  # reported, not fatal
            out[impl] = f"failed: {type(e).__name__}"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--voxel", type=float, default=0.005)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per timed callable")
    ap.add_argument("--only", default="")
    ap.add_argument("--dtype", choices=["bf16", "float32"], default=None,
                    help="autocast dtype of the step (default: bf16 on CUDA, float32 on the CPU)")
    ap.add_argument("--no-memory", action="store_true", help="CPU: skip the peak-memory child processes")
    ap.add_argument("--peak", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    add_budget_arg(ap)
    args = ap.parse_args()
    if args.peak:
        return peak_child(args)
    dev = torch.device(args.device)
    x, model = build(args, dev)
    V = len(x)
    amp_dtype = {"bf16": torch.bfloat16, "float32": None}[args.dtype or ("bf16" if dev.type == "cuda" else "float32")]
    impls = ["reference"] + (["MinkowskiEngine"] if ME is not None and dev.type == "cpu" else [])
    peers_f = {("pure-torch reference" if i == "reference" else i): runner(i, x, model, False, amp_dtype) for i in impls}
    peers_b = {("pure-torch reference" if i == "reference" else i): runner(i, x, model, True, amp_dtype) for i in impls}
    ours = {b: runner("pcgrasp", x, model, b, amp_dtype) for b in (False, True)}

    def peak():
        if dev.type != "cuda":
            return ""
        m = torch.cuda.max_memory_allocated(dev) / 2**20
        torch.cuda.reset_peak_memory_stats(dev)
        return f"peak CUDA memory {m:.0f} MiB"

    note = f"{args.points} points, {args.voxel * 1e3:g} mm voxels -> {V} voxels" + (
        f", {args.dtype or 'bf16'} autocast" if amp_dtype else "")
    sfx = "_bf16" if amp_dtype else ""
    cases = [
        {"name": "minkunet14d_512_forward" + sfx, "ours": ours[False], "peers": peers_f, "notes": note, "after": peak},
        {"name": "minkunet14d_512_forward_backward" + sfx, "ours": ours[True], "peers": peers_b, "notes": note,
         "after": peak},
    ]
    dname = device_name(dev)
    stats = {}
    res = run_cases(cases, dev, args.budget, args.only, args.budget_s, stats)
    meta = {"points": args.points, "voxel": args.voxel, "voxels": V,
            "minkowski": getattr(ME, "__version__", None), "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), **stats}
    if dev.type == "cpu" and not args.no_memory and not stats["stopped"] and os.path.exists("/proc/self/clear_refs"):
        meta["cpu_peak_rss_mib_forward_backward"] = peaks = cpu_peaks(args, ["pcgrasp"] + impls)
        print("CPU peak memory above the resident set, one forward + backward (MiB, median of 3 processes):",
              peaks, flush=True)
        # glibc keeps freed heap memory resident once its mmap threshold has grown (it grows to the size of
        # the largest freed block): a fixed threshold maps every large block and returns it on free, so the
        # peak is the memory live at once, without the allocator's run-to-run retention
        meta["cpu_peak_rss_mib_fixed_mmap_threshold"] = live = cpu_peaks(
            args, ["pcgrasp"] + impls, env={"MALLOC_MMAP_THRESHOLD_": "131072"})
        print("... with MALLOC_MMAP_THRESHOLD_=131072 (live memory):", live, flush=True)
        for r in res:
            if r["case"].endswith("forward_backward"):
                r["notes"] += ("; peak RSS MiB " + ", ".join(f"{k} {v}" for k, v in peaks.items())
                               + "; with a fixed mmap threshold " + ", ".join(f"{k} {v}" for k, v in live.items()))
    write_results(args.out, bool(args.only or stats["stopped"]), dname, res, meta,
                  title="Sparse backbone (MinkUNet14D)", stem="sparse")


if __name__ == "__main__":
    main()
