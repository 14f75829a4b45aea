"""Grasp-label commands (GraspNet-1B formats):

    pcgrasp labels --root data/graspnet_synthetic --scenes 0-99            # local Ray, or serial without Ray
    pcgrasp labels --root DIR --scenes 0-3 --ray-address ray://head:10001  # an existing Ray cluster
    pcgrasp labels --root DIR --scenes 0 --engine serial --points 50 --view-step 10

Writes grasp_label/, collision_label/ and graspness/ under the root; finished
files are skipped on a rerun. See pcgrasp.labels.pipeline.

    pcgrasp evaluate-grasps --root DIR --dump-dir PRED --scenes 100-189 [--json out.json]

AP of dumped grasps (graspnetAPI's layout: PRED/scene_<s:04d>/<camera>/<ann:04d>.npy,
[N, 17] GraspGroup arrays in the camera frame); see pcgrasp.eval.
"""
import time

from .common import existing_dir, int_at_least, torch_device


def _check_scenes(root, scenes, camera):
    """Before any work (and before Ray starts): the root's scene folders, with the camera's."""
    import os

    if not os.path.isdir(os.path.join(root, "scenes")):
        raise ValueError(f"--root {root}: no scenes/ folder (a GraspNet-1B-layout root, e.g. from generate-scenes)")
    for s in scenes:
        d = os.path.join(root, "scenes", f"scene_{s:04d}")
        if not os.path.isdir(d):
            raise ValueError(f"--scenes: {d} does not exist")
        if not os.path.isdir(os.path.join(d, camera)):
            has = sorted(x for x in os.listdir(d) if os.path.isdir(os.path.join(d, x)))
            raise ValueError(f"--camera {camera}: {d} has no such folder (it has: {', '.join(has) or 'none'})")


def cmd_labels(a):
    from ..data.synthetic.scenes import parse_scene_ids
    from ..labels.pipeline import generate_labels

    try:
        scenes = parse_scene_ids(a.scenes)
        _check_scenes(a.root, scenes, a.camera)
        views = None if a.view_step == 1 else list(range(0, 300, a.view_step))
        t0 = time.time()
        s = generate_labels(a.root, scenes, camera=a.camera, num_points=a.points, views=views, engine=a.engine,
                            ray_address=a.ray_address, num_cpus=a.num_cpus, retries=a.retries,
                            device=a.device, progress=not a.quiet)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise SystemExit(str(e)) from None
    failed = 0
    for name in ("grasp labels", "collision labels", "graspness"):
        st = s["stages"].get(name)
        if st is None:
            print(f"[labels] {name}: not run (an earlier stage failed)")
            continue
        failed += len(st["failed"])
        print(f"[labels] {name}: {st['written']} written, {st['skipped']} already there, {len(st['failed'])} failed "
              f"({st['seconds']:.1f} s)")
        for args, err in st["failed"]:
            print(f"    failed {args}: {err.strip().splitlines()[-1] if err else ''}")
    print(f"[labels] {a.root}: {len(scenes)} scenes with {s['engine']} in {time.time() - t0:.1f} s")
    return 1 if failed else 0


def cmd_evaluate_grasps(a):
    import json

    from ..data.synthetic.scenes import parse_scene_ids
    from ..eval import evaluate_scenes

    try:
        scenes = parse_scene_ids(a.scenes)
        _check_scenes(a.root, scenes, a.camera)
        t0 = time.time()
        r = evaluate_scenes(a.root, a.dump_dir, scenes, camera=a.camera, progress=not a.quiet, device=a.device)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(str(e)) from None
    for s, v in sorted(r["scenes"].items()):
        print(f"[evaluate-grasps] scene {s:04d}: AP {v['AP']:.2f}  AP0.8 {v['AP0.8']:.2f}  AP0.4 {v['AP0.4']:.2f}")
    for name, v in r["splits"].items():
        print(f"[evaluate-grasps] {name}: AP {v['AP']:.2f}  AP0.8 {v['AP0.8']:.2f}  AP0.4 {v['AP0.4']:.2f}")
    print(f"[evaluate-grasps] {len(r['scenes'])} scenes in {time.time() - t0:.1f} s")
    if a.json:
        out = {"scenes": {str(s): {k: v[k] for k in ("AP", "AP0.8", "AP0.4")} for s, v in r["scenes"].items()},
               "splits": r["splits"]}
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def register(sub):
    """Adds this pipeline's subcommands to the ``pcgrasp`` parser."""
    g = sub.add_parser("labels", help="grasp labels, collision labels and graspness (GraspNet-1B formats)")
    g.add_argument("--root", required=True, help="a GraspNet-1B-layout root (e.g. from generate-scenes)")
    g.add_argument("--scenes", default="0-99", help="scene ids, e.g. 0-99,130")
    g.add_argument("--camera", default="realsense", help="camera folder of the scenes (realsense, kinect)")
    g.add_argument("--points", type=int_at_least(1), default=300, help="label points per object (voxel-downsampled)")
    g.add_argument("--view-step", type=int_at_least(1), default=1,
                   help="every n-th of the 300 approach views (1: all, GraspNet-1B's grid; the subset is stored)")
    g.add_argument("--engine", choices=("auto", "ray", "serial"), default="auto",
                   help="auto: Ray when installed (pip install 'pcgrasp[scale]'), else serial")
    g.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: a local Ray instance)")
    g.add_argument("--num-cpus", type=int_at_least(1), default=None, help="CPUs of the local Ray instance")
    g.add_argument("--retries", type=int_at_least(0), default=2, help="retries of a failed task")
    g.add_argument("--device", default=None, type=torch_device, help="torch device of the collision checks and kNN (default cpu)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.set_defaults(func=cmd_labels)

    e = sub.add_parser("evaluate-grasps", help="graspnetAPI-style AP of dumped [N, 17] grasp arrays")
    e.add_argument("--root", required=True, help="the GraspNet-1B-layout root (models, scenes)")
    e.add_argument("--dump-dir", required=True, type=existing_dir, help="PRED/scene_<s>/<camera>/<ann>.npy grasp arrays")
    e.add_argument("--scenes", default="100-189", help="scene ids (splits: 100-129 seen, 130-159 similar, "
                                                        "160-189 novel)")
    e.add_argument("--camera", default="realsense", help="camera folder of the scenes (realsense, kinect)")
    e.add_argument("--json", default=None, help="also write the APs to this JSON file")
    e.add_argument("--device", default=None, type=torch_device, help="torch device of the collision checks (default cpu)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate_grasps)
