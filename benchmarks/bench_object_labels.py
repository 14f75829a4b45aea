"""Per-object grasp labels (``labels.grasp_labels.object_grasp_labels``): time and peak
memory of a full GraspNet-size object (300 label points x 300 views x 12 angles x 4
depths = 4.32M grasps, 8.64M jaw rays) with Embree, and the peak memory of the same
work without Embree (trimesh's own caster, on a subset of the label points since it is
~100x slower; its peak does not grow with the point count because rays and collision
checks go in bounded chunks). Each case runs in a fresh subprocess so that its peak
resident memory (``ru_maxrss``) is its own.

    python benchmarks/bench_object_labels.py [--threads 2] [--points 300] [--quick]

Writes benchmarks/results/<machine>-<threads>-threads-object-labels.{json,md}.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _case(kind, points, embree, threads):
    """Runs in the child: label one synthetic object, print a JSON line."""
    import resource

    import torch

    torch.set_num_threads(threads)
    import numpy as np
    import trimesh

    from pcgrasp.data.synthetic.objects import object_pool
    from pcgrasp.data.synthetic.scenes import scan_like
    from pcgrasp.labels.grasp_labels import object_grasp_labels

    pool = {o.category: o for o in object_pool()}
    mesh = scan_like(pool[kind].mesh)
    if not embree:
        mesh.ray = trimesh.ray.ray_triangle.RayMeshIntersector(mesh)
    label_points = None if points is None else np.arange(points)
    t = time.perf_counter()
    lab = object_grasp_labels(mesh, num_points=300, seed=0, points=label_points)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB (Linux)
    print(json.dumps({"object": kind, "faces": int(len(mesh.faces)), "label_points": int(len(lab["points"])),
                      "grasps": int(lab["scores"].size), "embree": embree, "seconds": dt, "peak_rss_mb": peak,
                      "positive_fraction": float((lab["scores"] > 0).mean()),
                      "collision_fraction": float(lab["collision"].mean())}))


def run_child(kind, points, embree, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    code = (f"import sys; sys.path.insert(0, {HERE!r}); import bench_object_labels as b; "
            f"b._case({kind!r}, {points!r}, {embree!r}, {threads!r})")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points", type=int, default=None, help="label points with Embree (default: all ~300)")
    ap.add_argument("--no-embree-points", type=int, default=1, help="label points without Embree (slow: ~1-2 min each)")
    ap.add_argument("--objects", default="mug,box")
    ap.add_argument("--quick", action="store_true", help="16 points with Embree, 2 without")
    a = ap.parse_args()
    if a.quick:
        a.points, a.no_embree_points = 16, 1
    rows = []
    for kind in a.objects.split(","):
        for embree, pts in ((True, a.points), (False, a.no_embree_points)):
            r = run_child(kind, pts, embree, a.threads)
            rows.append(r)
            print(f"{kind:6s} embree={embree!s:5s} points {r['label_points']:3d} grasps {r['grasps']:>9,d} "
                  f"{r['seconds']:7.1f} s  peak {r['peak_rss_mb']:6.0f} MB  positive {r['positive_fraction']:.3f}",
                  flush=True)
    machine = platform.processor() or platform.machine()
    meta = {"date": time.strftime("%Y-%m-%d"), "threads": a.threads, "python": platform.python_version(),
            "machine": machine, "cpu_count": os.cpu_count()}
    tag = "amd-epyc" if "AMD" in open("/proc/cpuinfo").read() else "intel" if os.path.exists("/proc/cpuinfo") \
        else "cpu"
    base = os.path.join(HERE, "results", f"{tag}-{a.threads}-threads-object-labels")
    os.makedirs(os.path.dirname(base), exist_ok=True)
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(f"# Per-object grasp labels ({meta['date']}, {a.threads} threads, {tag})\n\n"
                "| object | faces | Embree | label points | grasps | seconds | peak RSS (MB) | positive |\n"
                "|---|---:|---|---:|---:|---:|---:|---:|\n")
        for r in rows:
            f.write(f"| {r['object']} | {r['faces']} | {r['embree']} | {r['label_points']} | {r['grasps']:,} | "
                    f"{r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['positive_fraction']:.3f} |\n")
    print("wrote", base + ".{json,md}")


if __name__ == "__main__":
    main()
