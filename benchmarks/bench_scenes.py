"""Synthetic scene generation speed: depth rendering per frame against trimesh's
own ray-casting paths in the same process, and end-to-end frames/s of
``generate_scenes`` (render + PNGs + meta) at 1280x720 and at the demo size.

    python benchmarks/bench_scenes.py [--quick]

Writes benchmarks/results/<cpu>-scenes.{json,md}.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import device_name, run_cases, write_results  # noqa: E402

from pcgrasp.data.synthetic.objects import OBJECT_CATEGORIES, make_object  # noqa: E402
from pcgrasp.data.synthetic.render import DepthRenderer, camera_intrinsics, look_at, pixel_rays  # noqa: E402
from pcgrasp.data.synthetic.scenes import generate_scenes, place_objects, table_mesh  # noqa: E402


def scene_meshes(n=8, seed=0):
    rng = np.random.default_rng(seed)
    meshes = [make_object(OBJECT_CATEGORIES[i % len(OBJECT_CATEGORIES)], rng) for i in range(n)]
    kept, poses = place_objects(meshes, rng)
    return [table_mesh()] + [meshes[k].copy().apply_transform(T) for k, T in zip(kept, poses)]


def render_cases(sizes, slow_max_pixels):
    from trimesh.ray import ray_triangle

    meshes = scene_meshes()
    r = DepthRenderer(meshes)
    T = look_at([0.4, -0.3, 0.45], [0, 0, 0])
    cases = []
    for W, H in sizes:
        K = camera_intrinsics(W, H)
        d = pixel_rays(K, W, H).reshape(-1, 3) @ T[:3, :3].T
        o = np.tile(T[:3, 3], (len(d), 1))
        peers = {"trimesh embree intersects_location": lambda o=o, d=d: r.intersector.intersects_location(
            o, d, multiple_hits=False)}
        if W * H <= slow_max_pixels:
            slow = ray_triangle.RayMeshIntersector(r.mesh)
            peers["trimesh pure-Python intersects_first"] = lambda o=o, d=d, s=slow: s.intersects_first(o, d)
        cases.append({"name": f"render depth+label+normals {W}x{H}, table + {len(meshes) - 1} objects",
                      "ours": lambda K=K, W=W, H=H: r.render(T, K, W, H), "peers": peers,
                      "notes": f"{r.faces.shape[0]} triangles"})
    return cases


def frames_per_second(width, height, scenes, views, workers):
    root = tempfile.mkdtemp(prefix="bench_scenes_")
    try:
        t = time.perf_counter()
        s = generate_scenes(root, scenes=scenes, views=views, width=width, height=height, workers=workers,
                            progress=False)
        dt = time.perf_counter() - t
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return s["frames_written"] / dt, s["frames_written"], dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = ap.parse_args()
    device = torch.device("cpu")
    dname = device_name(device)
    sizes = [(160, 90), (320, 180), (640, 360)] + ([] if a.quick else [(1280, 720)])
    results = run_cases(render_cases(sizes, slow_max_pixels=160 * 90), device, budget=10.0 if a.quick else 30.0)
    end_to_end = [(640, 360, "0-1", 16), (1280, 720, "0-1", 8 if a.quick else 16)]
    for W, H, sc, V in end_to_end:
        for workers in (1, 2):
            fps, n, dt = frames_per_second(W, H, sc, V, workers)
            name = f"generate_scenes {W}x{H}, 2 scenes x {V} views, workers={workers}"
            print(f"{name}: {fps:.2f} frames/s ({n} frames in {dt:.1f} s)", flush=True)
            results.append({"case": name, "pcgrasp_ms": 1e3 / fps, "reps": 1, "peers": {},
                            "notes": f"{fps:.2f} frames/s end to end (render, depth/label/rgb PNGs, meta .mat; "
                                     "object placement included)"})
    write_results(a.out, False, dname, results, {"quick": a.quick}, title="Synthetic scene generation",
                  stem="scenes")


if __name__ == "__main__":
    main()
