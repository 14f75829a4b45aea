"""Benchmarks of the contrastive / detection ops at GraspContrast and GSNet shapes.

    python benchmarks/bench_contrastive.py [--device cpu|cuda] [--quick] [--only NAME] [--large]
                                           [--out DIR] [--budget-s S]

Cases: cross-view correspondences and radius pairs (two views of 20000 points,
eps = 1.5 x 5 mm, rigid transforms applied on the fly) against a brute-force
cdist, scipy cKDTree and an Open3D KD-tree loop (PointContrast style);
PointInfoNCE with FNE at M in {4096, 16384}, C = 512 (time and peak memory)
against the naive M x M version; voxelize B=4, N=20000 at 5 mm (and one 0.92M-point frame at 2 mm) against NumPy
unique and MinkowskiEngine; cylinder query B=4, M=1024, N=20000, k in {16, 64}
against a chunked PyTorch brute force; the sequencer B=512, G=64 against the
G-step PyTorch loop. --large adds M=16384 InfoNCE on CPU (minutes, GiBs).
Results: benchmarks/results/<device>-contrastive.{json,md}.
"""
import argparse
import multiprocessing as mp
import os

import numpy as np
import torch

from pcgrasp import ops

from _common import add_budget_arg, device_name, optional_import as _try, run_cases, write_results

HERE = os.path.dirname(os.path.abspath(__file__))


o3d = _try("open3d")
spatial = _try("scipy.spatial")
ME = _try("MinkowskiEngine")


def rigid(B, g, device):
    q, _ = torch.linalg.qr(torch.randn(B, 3, 3, generator=g))
    q = q * torch.sign(torch.linalg.det(q)).view(B, 1, 1)
    T = torch.zeros(B, 4, 4)
    T[:, :3, :3], T[:, :3, 3], T[:, 3, 3] = q, torch.randn(B, 3, generator=g) * 0.2, 1
    return T.to(device)


def to_world(p, T):
    return p @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]


# ---------------------------------------------------------------- baselines
def brute_corr(src, dst, Ts, Td, r):
    d = torch.cdist(to_world(src, Ts), to_world(dst, Td))
    val, idx = d.min(2)
    return torch.where(val < r, idx, torch.full_like(idx, -1))


def brute_pairs(src, dst, Ts, Td, r):
    return (torch.cdist(to_world(src, Ts), to_world(dst, Td)) < r).nonzero()


def naive_info_nce(a, b, xyz, tau, gamma):
    S = a @ b.transpose(1, 2) / tau
    keep = (torch.cdist(xyz, xyz) >= gamma) | torch.eye(a.shape[1], dtype=torch.bool, device=a.device)
    S = S.masked_fill(~keep, float("-inf"))
    return (torch.logsumexp(S, -1) - torch.diagonal(S, dim1=1, dim2=2)).mean()


def cylinder_brute(q, R, p, r, hmin, hmax, k, chunk=128):
    out = []
    for s in range(0, q.shape[1], chunk):
        loc = torch.einsum("bmdj,bmnd->bmnj", R[:, s:s + chunk], p[:, None] - q[:, s:s + chunk, None])
        inside = (loc[..., 1] ** 2 + loc[..., 2] ** 2 < r * r) & (loc[..., 0] > hmin) & (loc[..., 0] < hmax)
        key = torch.where(inside, torch.arange(p.shape[1], device=p.device), p.shape[1])
        out.append(key.topk(k, largest=False).values)
    return torch.cat(out, 1)


def sequencer_loop(c):
    """Point-JEPA style: G batched steps in Python."""
    B, G, _ = c.shape
    d = torch.cdist(c, c)
    cur = c.sum(-1).argmin(1)
    order = [cur]
    visited = torch.zeros(B, G, dtype=torch.bool, device=c.device)
    ar = torch.arange(B, device=c.device)
    for _ in range(G - 1):
        visited[ar, cur] = True
        cur = d[ar, cur].masked_fill(visited, float("inf")).argmin(1)
        order.append(cur)
    return torch.stack(order, 1)


def numpy_quantize(pts, s):
    res = []
    for b in range(pts.shape[0]):
        c = np.floor(pts[b] / s).astype(np.int32)
        res.append(np.unique(c, axis=0, return_index=True, return_inverse=True))
    return res


def _vm_hwm_mib():
    # this process's own high-water RSS; ru_maxrss would include the parent's
    # peak, which Linux carries across exec
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# peak memory of one InfoNCE forward + backward, in a fresh process on CPU
def _nce_job(kind, M, C, q):
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(1, M, C, generator=g), dim=-1).requires_grad_()
    b = torch.nn.functional.normalize(torch.randn(1, M, C, generator=g), dim=-1).requires_grad_()
    xyz = torch.rand(1, M, 3, generator=g)
    base = _vm_hwm_mib()
    if kind == "fused":
        ops.point_info_nce(a, b, xyz, 0.07, 0.05).backward()
    else:
        naive_info_nce(a, b, xyz, 0.07, 0.05).backward()
    q.put(_vm_hwm_mib() - base)


def peak_mib(kind, M, C, device):
    if device.type == "cuda":
        g = torch.Generator().manual_seed(0)
        a = torch.randn(1, M, C, generator=g).to(device).requires_grad_()
        b = torch.randn(1, M, C, generator=g).to(device).requires_grad_()
        xyz = torch.rand(1, M, 3, generator=g).to(device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        (ops.point_info_nce(a, b, xyz, 0.07, 0.05) if kind == "fused" else naive_info_nce(a, b, xyz, 0.07, 0.05)).backward()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_nce_job, args=(kind, M, C, q))
    p.start()
    p.join()
    return q.get() if p.exitcode == 0 else float("nan")


def cases(device, quick, large):
    g = torch.Generator().manual_seed(0)
    out = []
    # two RGB-D views of 20000 points seen from different poses, eps = 7.5 mm
    B, N, eps = (2 if quick else 8), 20000, 1.5 * 0.005
    world_pts = torch.rand(B, N, 3, generator=g) * torch.tensor([0.6, 0.6, 0.3])
    Ts, Td = rigid(B, g, "cpu"), rigid(B, g, "cpu")
    src = to_world(world_pts, torch.linalg.inv(Ts))  # camera-frame coordinates
    dst = to_world(world_pts[:, torch.randperm(N, generator=g)] + 0.002 * torch.randn(B, N, 3, generator=g),
                   torch.linalg.inv(Td))
    src, dst, Ts, Td = (x.to(device) for x in (src, dst, Ts, Td))
    c = dict(name=f"correspondences B={B} N=M={N} eps=7.5mm", ours=lambda: ops.correspondences(src, dst, eps, src_transform=Ts, dst_transform=Td),
             peers={"torch cdist": lambda: brute_corr(src, dst, Ts, Td, eps)},
             notes="rigid transforms applied on the fly")
    if spatial and device.type == "cpu":
        ws, wd = to_world(src, Ts).numpy(), to_world(dst, Td).numpy()
        c["peers"]["scipy cKDTree"] = lambda: [spatial.cKDTree(wd[b]).query(ws[b], 1, distance_upper_bound=eps, workers=2)
                                               for b in range(B)]
    if o3d and device.type == "cpu":
        ws64, wd64 = to_world(src, Ts).double().numpy(), to_world(dst, Td).double().numpy()

        def o3d_loop():  # PointContrast's matching: a KD-tree query per point in Python
            for b in range(B):
                pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(wd64[b]))
                tree = o3d.geometry.KDTreeFlann(pc)
                for p in ws64[b]:
                    tree.search_hybrid_vector_3d(p, eps, 1)
        c["peers"]["open3d KDTree loop"] = o3d_loop
    out.append(c)
    out.append(dict(name=f"radius_pairs B={B} N=M={N} eps=7.5mm",
                    ours=lambda: ops.radius_pairs(src, dst, eps, src_transform=Ts, dst_transform=Td),
                    peers={"torch cdist": lambda: brute_pairs(src, dst, Ts, Td, eps)}))

    # PointInfoNCE + FNE, C = 512
    for M in (4096, 16384):
        if M == 16384 and device.type == "cpu" and not large:
            continue
        C = 512
        a = torch.nn.functional.normalize(torch.randn(1, M, C, generator=g), dim=-1).to(device).requires_grad_()
        b = torch.nn.functional.normalize(torch.randn(1, M, C, generator=g), dim=-1).to(device).requires_grad_()
        xyz = torch.rand(1, M, 3, generator=g).to(device)
        out.append(dict(
            name=f"point_info_nce fwd+bwd M={M} C={C} gamma=5cm",
            ours=lambda a=a, b=b, xyz=xyz: ops.point_info_nce(a, b, xyz, 0.07, 0.05).backward(),
            peers={"naive MxM": lambda a=a, b=b, xyz=xyz: naive_info_nce(a, b, xyz, 0.07, 0.05).backward()},
            after=lambda M=M, C=C: "peak MiB: pcgrasp {:.0f}, naive {:.0f}".format(
                peak_mib("fused", M, C, device), peak_mib("naive", M, C, device))))

    # voxelize B=4, N=20000 at 5 mm
    vp = (torch.rand(4, 20000, 3, generator=g) * torch.tensor([0.6, 0.6, 0.3])).to(device)
    c = dict(name="voxelize B=4 N=20000 5mm", ours=lambda: ops.voxelize(vp, 0.005), peers={})
    if device.type == "cpu":
        vnp = vp.numpy()
        c["peers"]["numpy unique"] = lambda: numpy_quantize(vnp, 0.005)
    if ME:
        vcpu = vp.cpu().numpy()
        c["peers"]["MinkowskiEngine sparse_quantize (CPU)"] = lambda: [
            ME.utils.sparse_quantize(vcpu[b], quantization_size=0.005, return_index=True, return_inverse=True)
            for b in range(4)]
    out.append(c)
    # one full-resolution depth frame's cloud (1280 x 720 ~ 0.92M points) at 2 mm
    vb = (torch.rand(1, 921600, 3, generator=g) * torch.tensor([1.0, 0.6, 0.4])).to(device)
    c = dict(name="voxelize B=1 N=921600 2mm", ours=lambda: ops.voxelize(vb, 0.002), peers={})
    if ME:
        vbn = vb[0].cpu().numpy()
        c["peers"]["MinkowskiEngine sparse_quantize (CPU)"] = lambda: ME.utils.sparse_quantize(
            vbn, quantization_size=0.002, return_index=True, return_inverse=True)
    out.append(c)

    # cylinder query B=4, M=1024, N=20000 (GSNet CloudCrop: r=5cm, h in (-2cm, 4cm))
    cp = torch.rand(4, 20000, 3, generator=g).to(device) * 0.5
    cq = cp[:, :1024].contiguous()
    R, _ = torch.linalg.qr(torch.randn(4, 1024, 3, 3, generator=g))
    R = R.to(device)
    for k in (16, 64):
        out.append(dict(name=f"cylinder_query B=4 M=1024 N=20000 k={k}",
                        ours=lambda k=k: ops.cylinder_query(cq, R, cp, 0.05, -0.02, 0.04, k),
                        peers={"torch brute (chunked)": lambda k=k: cylinder_brute(cq, R, cp, 0.05, -0.02, 0.04, k)}))

    # sequencer
    centres = torch.rand(512, 64, 3, generator=g).to(device)
    out.append(dict(name="nearest_neighbor_order B=512 G=64", ours=lambda: ops.nearest_neighbor_order(centres),
                    peers={"torch G-step loop": lambda: sequencer_loop(centres)}))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--large", action="store_true", help="also M=16384 InfoNCE on CPU")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--budget", type=float, default=15.0, help="seconds per timed callable")
    add_budget_arg(ap)
    a = ap.parse_args()
    device = torch.device(a.device)
    ops.set_data_checks(False)
    dname = device_name(device)
    print(f"# pcgrasp contrastive/detection benchmarks on {dname}, torch {torch.__version__}")
    stats = {}
    results = run_cases(cases(device, a.quick, a.large), device, a.budget, a.only, a.budget_s, stats)
    write_results(a.out, bool(a.only or stats["stopped"]), dname, results, {"quick": a.quick, "peers_available": {
        "open3d": bool(o3d), "scipy": bool(spatial), "MinkowskiEngine": bool(ME)}, **stats},
        title="Contrastive / detection benchmarks", stem="contrastive")


if __name__ == "__main__":
    main()
