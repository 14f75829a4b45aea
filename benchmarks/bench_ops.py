"""Times pcgrasp ops against installed peers in the same process, same device.

    python benchmarks/bench_ops.py [--device cpu|cuda] [--quick] [--only NAME] [--out DIR] [--budget-s S]

Shapes follow the users' workloads: Point-JEPA (B=512, N=1024, 64 centres,
k=32), a scene batch (B=32, N=20000, 1024 samples; ball query r in
{0.04, 0.1, 0.2}, k in {16, 32, 64}) and one large cloud (B=1, N=1e6, 16384
samples). Peers are used when importable: torch_cluster, fpsample, open3d,
scipy cKDTree, pytorch3d; a plain-PyTorch baseline always. Reports medians
and ratios (peer time / pcgrasp time, > 1 means pcgrasp is faster) and writes
JSON + markdown under benchmarks/results/, named by device.
"""
import argparse
import os

import torch

from pcgrasp import ops

from _common import add_budget_arg, device_name, optional_import as _try, run_cases, write_results

HERE = os.path.dirname(os.path.abspath(__file__))


torch_cluster = _try("torch_cluster")
fpsample = _try("fpsample")
o3d = _try("open3d")
scipy_spatial = _try("scipy.spatial")
pytorch3d_ops = None
if _try("pytorch3d"):
    try:
        from pytorch3d import ops as pytorch3d_ops
    except Exception:
        pytorch3d_ops = None


# ---------------------------------------------------------------- baselines
def torch_fps(points, k):
    """Plain PyTorch FPS (batched loop over k)."""
    B, N, _ = points.shape
    idx = torch.zeros(B, k, dtype=torch.long, device=points.device)
    mind = torch.full((B, N), float("inf"), device=points.device)
    sel = torch.zeros(B, dtype=torch.long, device=points.device)
    ar = torch.arange(B, device=points.device)
    for s in range(k):
        idx[:, s] = sel
        d = ((points - points[ar, sel].unsqueeze(1)) ** 2).sum(-1)
        mind = torch.minimum(mind, d)
        sel = mind.argmax(1)
    return idx


def torch_knn(q, p, k):
    return torch.cdist(q, p).topk(k, largest=False)


def torch_ball(q, p, r, k):
    d = torch.cdist(q, p) ** 2
    n = p.shape[1]
    key = torch.where(d < r * r, torch.arange(n, device=p.device).expand_as(d), n)
    return key.topk(k, largest=False).values  # first k inside, pointnet2 order


def _batch_vec(B, N, device):
    return torch.arange(B, device=device).repeat_interleave(N)


# ---------------------------------------------------------------- cases
# Shapes are rebound from case to case: lambdas bind what they use as defaults.
def cases(device, quick):
    g = torch.Generator().manual_seed(0)

    def cloud(B, N):
        return torch.rand(B, N, 3, generator=g).to(device)

    out = []
    # Point-JEPA tokenizer
    B, N, G, k = (64, 1024, 64, 32) if quick else (512, 1024, 64, 32)
    pj = cloud(B, N)
    pj_c = ops.gather_points(pj, ops.farthest_point_sample(pj, G))
    c = dict(name=f"fps pointjepa B={B} N={N} K={G}", ours=lambda: ops.farthest_point_sample(pj, G),
             peers={"torch": lambda: torch_fps(pj, G)})
    if torch_cluster:
        bv, flat = _batch_vec(B, N, device), pj.reshape(-1, 3)
        c["peers"]["torch_cluster"] = lambda flat=flat, bv=bv, r=G / N: torch_cluster.fps(flat, bv, ratio=r, random_start=False)
    if pytorch3d_ops:
        c["peers"]["pytorch3d"] = lambda: pytorch3d_ops.sample_farthest_points(pj, K=G)
    out.append(c)
    c = dict(name=f"knn pointjepa B={B} M={G} N={N} k={k}", ours=lambda: ops.knn(pj_c, pj, k),
             peers={"torch": lambda: torch_knn(pj_c, pj, k)})
    if pytorch3d_ops:
        c["peers"]["pytorch3d"] = lambda: pytorch3d_ops.knn_points(pj_c, pj, K=k)
    out.append(c)
    out.append(dict(name=f"ball_query pointjepa B={B} M={G} N={N} r=0.05 k={k}",
                    ours=lambda: ops.ball_query(pj_c, pj, 0.05, k, order="first"),
                    peers={"torch": lambda: torch_ball(pj_c, pj, 0.05, k)}))
    feats = torch.randn(B, N, 64, generator=g).to(device)
    kidx = ops.knn(pj_c, pj, k)[1]
    out.append(dict(name=f"gather pointjepa B={B} C=64 idx={G}x{k}", ours=lambda: ops.gather_points(feats, kidx),
                    peers={"torch": lambda B=B: torch.stack([feats[b][kidx[b]] for b in range(B)])}))

    # scene
    B, N, S = (8, 20000, 1024) if quick else (32, 20000, 1024)
    sc = cloud(B, N)
    sc_c = ops.gather_points(sc, ops.farthest_point_sample(sc, S))
    c = dict(name=f"fps scene B={B} N={N} K={S}", ours=lambda: ops.farthest_point_sample(sc, S),
             peers={"torch": lambda: torch_fps(sc, S)})
    if torch_cluster:
        bv, flat = _batch_vec(B, N, device), sc.reshape(-1, 3)
        c["peers"]["torch_cluster"] = lambda flat=flat, bv=bv, r=S / N: torch_cluster.fps(flat, bv, ratio=r, random_start=False)
    if fpsample and device.type == "cpu":
        npc = sc.numpy()
        c["peers"]["fpsample(bucket_kdline)"] = lambda B=B: [fpsample.bucket_fps_kdline_sampling(npc[b], S, h=7) for b in range(B)]
    out.append(c)
    c = dict(name=f"knn scene B={B} M={S} N={N} k=32", ours=lambda: ops.knn(sc_c, sc, 32),
             peers={"torch": lambda: torch_knn(sc_c, sc, 32)})
    if scipy_spatial and device.type == "cpu":
        npp, npq = sc.numpy(), sc_c.numpy()
        c["peers"]["scipy cKDTree (workers=2)"] = lambda B=B: [
            scipy_spatial.cKDTree(npp[b]).query(npq[b], 32, workers=2) for b in range(B)]
    if torch_cluster:
        c["peers"]["torch_cluster"] = lambda: torch_cluster.knn(sc.reshape(-1, 3), sc_c.reshape(-1, 3), 32,
                                                               _batch_vec(B, N, device), _batch_vec(B, S, device))
    out.append(c)
    for r in (0.04, 0.1, 0.2):
        for kk in (16, 32, 64):
            if quick and kk != 32:
                continue
            c = dict(name=f"ball_query scene B={B} M={S} N={N} r={r} k={kk}",
                     ours=lambda r=r, kk=kk: ops.ball_query(sc_c, sc, r, kk, order="first"),
                     peers={})
            if kk == 32:
                c["peers"]["torch"] = lambda r=r, kk=kk: torch_ball(sc_c, sc, r, kk)
            if torch_cluster:
                c["peers"]["torch_cluster"] = lambda r=r, kk=kk: torch_cluster.radius(
                    sc.reshape(-1, 3), sc_c.reshape(-1, 3), r, _batch_vec(B, N, device), _batch_vec(B, S, device), kk)
            if pytorch3d_ops:
                c["peers"]["pytorch3d"] = lambda r=r, kk=kk: pytorch3d_ops.ball_query(sc_c, sc, K=kk, radius=r)
            out.append(c)
    fine, coarse = sc[:, :4096], sc_c
    ff = torch.randn(B, S, 128, generator=g).to(device)
    d3, i3 = ops.three_nn(fine, coarse)
    w3 = ops.inverse_distance_weights(d3)
    out.append(dict(name=f"three_nn B={B} M=4096 N={S}", ours=lambda: ops.three_nn(fine, coarse),
                    peers={"torch": lambda: torch_knn(fine, coarse, 3)}))
    out.append(dict(name=f"three_interpolate B={B} M=4096 N={S} C=128", ours=lambda: ops.three_interpolate(ff, i3, w3),
                    peers={"torch": lambda: (torch.stack([ff[b][i3[b]] for b in range(B)]) * w3[..., None]).sum(2)}))

    # one 100k cloud (CPU goal vs open3d) and one 1M cloud
    one = cloud(1, 100_000)
    c = dict(name="fps single N=100000 K=1024", ours=lambda: ops.farthest_point_sample(one, 1024), peers={})
    if o3d and device.type == "cpu":
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(one[0].double().numpy()))
        c["peers"]["open3d"] = lambda: pc.farthest_point_down_sample(1024)
    if fpsample and device.type == "cpu":
        npo = one[0].numpy()
        c["peers"]["fpsample(vanilla)"] = lambda: fpsample.fps_sampling(npo, 1024)
        c["peers"]["fpsample(bucket_kdline)"] = lambda: fpsample.bucket_fps_kdline_sampling(npo, 1024, h=7)
        c["peers"]["fpsample(bucket_kdline h=9)"] = lambda: fpsample.bucket_fps_kdline_sampling(npo, 1024, h=9)
    if torch_cluster:
        c["peers"]["torch_cluster"] = lambda: torch_cluster.fps(one[0], None, ratio=1024 / 100_000, random_start=False)
    out.append(c)
    if not quick:
        big = cloud(1, 1_000_000)
        c = dict(name="fps single N=1000000 K=4096", ours=lambda: ops.farthest_point_sample(big, 4096), peers={})
        if fpsample and device.type == "cpu":
            npb = big[0].numpy()
            c["peers"]["fpsample(bucket_kdline)"] = lambda: fpsample.bucket_fps_kdline_sampling(npb, 4096, h=7)
            c["peers"]["fpsample(bucket_kdline h=9)"] = lambda: fpsample.bucket_fps_kdline_sampling(npb, 4096, h=9)
        out.append(c)
        c = dict(name="fps single N=1000000 K=16384", ours=lambda: ops.farthest_point_sample(big, 16384), peers={})
        if torch_cluster:
            c["peers"]["torch_cluster"] = lambda: torch_cluster.fps(big[0], None, ratio=16384 / 1e6, random_start=False)
        if o3d and device.type == "cpu":
            pcb = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(big[0].double().numpy()))
            c["peers"]["open3d"] = lambda: pcb.farthest_point_down_sample(16384)
        if fpsample and device.type == "cpu":
            c["peers"]["fpsample(bucket_kdline)"] = lambda: fpsample.bucket_fps_kdline_sampling(npb, 16384, h=7)
            c["peers"]["fpsample(bucket_kdline h=9)"] = lambda: fpsample.bucket_fps_kdline_sampling(npb, 16384, h=9)
        out.append(c)
        bq = cloud(1, 16384)
        c = dict(name="knn single M=16384 N=1000000 k=16", ours=lambda: ops.knn(bq, big, 16), peers={})
        if scipy_spatial and device.type == "cpu":
            c["peers"]["scipy cKDTree (workers=2)"] = lambda: scipy_spatial.cKDTree(big[0].numpy()).query(bq[0].numpy(), 16, workers=2)
        out.append(c)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="smaller batches, fewer cases")
    ap.add_argument("--only", default="", help="run cases whose name contains this")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--budget", type=float, default=15.0, help="seconds per timed callable")
    add_budget_arg(ap)
    a = ap.parse_args()
    device = torch.device(a.device)
    ops.set_data_checks(False)  # time the kernels, not the argument checks
    dname = device_name(device)
    print(f"# pcgrasp benchmarks on {dname}, torch {torch.__version__}")
    stats = {}
    results = run_cases(cases(device, a.quick), device, a.budget, a.only, a.budget_s, stats)
    write_results(a.out, bool(a.only or stats["stopped"]), dname, results, {"quick": a.quick, "peers_available": {
        "torch_cluster": bool(torch_cluster), "fpsample": bool(fpsample), "open3d": bool(o3d),
        "scipy": bool(scipy_spatial), "pytorch3d": bool(pytorch3d_ops)}, **stats})


if __name__ == "__main__":
    main()
