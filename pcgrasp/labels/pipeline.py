"""All labels of a GraspNet-1B-layout root (``pcgrasp labels``): per-object
grasp labels, per-scene collision labels, per-frame graspness, in three
stages (each needs the previous one's files).

Every unit of work is a task writing its own file(s) (temporary name, then
rename), so a rerun skips finished files and an interrupted one leaves no
partial file. With ``engine="ray"`` the tasks run as Ray remote tasks (a local
Ray instance, or the cluster at ``ray_address``; Ray retries a failed task
``retries`` times); with ``engine="serial"`` (or when Ray is not installed, in
"auto") they run one after the other in this process, each retried the same
number of times. Both write identical files: the results depend only on the
task's arguments.
"""
import os
import time
import traceback

from .grasp_labels import grasp_label_path, write_object_labels
from .scene_labels import _object_ids, collision_label_path, graspness_path, write_scene_collision_labels, \
    write_scene_graspness


def _object_task(root, obj_id, num_points, views, seed, device):
    return write_object_labels(root, obj_id, num_points=num_points, views=views, seed=seed, device=device)


def _collision_task(root, scene_id, camera, spacing, device):
    return write_scene_collision_labels(root, scene_id, camera=camera, spacing=spacing, device=device)


def _graspness_task(root, scene_id, camera, ann_id, device):
    return write_scene_graspness(root, scene_id, camera=camera, anns=[ann_id], device=device) > 0


def ray_available():
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _run_serial(tasks, retries, bar):
    results = []
    for fn, args in tasks:
        err = None
        for _ in range(retries + 1):
            try:
                results.append((args, fn(*args), None))
                err = None
                break
            except Exception:  # noqa: BLE001 - reported in the summary
                err = traceback.format_exc(limit=3)
        if err is not None:
            results.append((args, None, err))
        bar.update()
    return results


def _run_ray(tasks, retries, bar):
    import ray

    remote = {}
    refs = {}
    for fn, args in tasks:
        if fn not in remote:
            remote[fn] = ray.remote(max_retries=retries, retry_exceptions=True, num_cpus=1)(fn)
        refs[remote[fn].remote(*args)] = args
    results, pending = [], list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for r in done:
            try:
                results.append((refs[r], ray.get(r), None))
            except Exception as e:  # noqa: BLE001 - reported in the summary
                results.append((refs[r], None, f"{type(e).__name__}: {e}"))
            bar.update()
    return results


def generate_labels(root, scenes, camera="realsense", num_points=300, views=None, spacing=0.005, seed=0,
                    engine="auto", ray_address=None, num_cpus=None, retries=2, device=None, progress=True, log=print):
    """Runs the three stages for ``scenes`` (ids) of ``root``. engine: "auto"
    (Ray when installed, else serial with a note), "ray" or "serial".
    device: the torch device of the collision checks and kNN (e.g. "cuda";
    ray casting stays on the CPU).
    Returns a summary dict: per stage the files written, skipped and failed
    (with the errors), and the seconds taken."""
    from tqdm import tqdm

    if engine not in ("auto", "ray", "serial"):
        raise ValueError(f"engine must be 'auto', 'ray' or 'serial', got {engine!r}")
    if not os.path.isdir(os.path.join(root, "scenes")):
        raise FileNotFoundError(f"root {root!r} has no scenes/ folder (a GraspNet-1B layout root)")
    use_ray = engine == "ray" or (engine == "auto" and ray_available())
    if engine == "ray" and not ray_available():
        raise RuntimeError("engine='ray' needs Ray, which is not installed (pip install 'pcgrasp[scale]' or pip "
                           "install ray; engine 'serial' runs without it)")
    if engine == "auto" and not use_ray:
        log("[labels] note: Ray is not installed (pip install 'pcgrasp[scale]'): running the tasks serially")
    views = None if views is None else [int(v) for v in views]
    if use_ray:
        import ray

        if not ray.is_initialized():
            kw = {"address": ray_address} if ray_address else {"num_cpus": num_cpus}
            ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                                               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}},
                     **kw)
    run = _run_ray if use_ray else _run_serial

    scene_objects = {s: _object_ids(root, s) for s in scenes}
    objects = sorted({o for ids in scene_objects.values() for o in ids})
    stages = [
        ("grasp labels", [(_object_task, (root, o, num_points, views, seed, device)) for o in objects
                          if not os.path.exists(grasp_label_path(root, o))], len(objects)),
    ]
    summary = {"engine": "ray" if use_ray else "serial", "stages": {}}

    def run_stage(name, tasks, total):
        t0 = time.time()
        bar = tqdm(total=total, initial=total - len(tasks), desc=name, disable=not progress)
        res = run(tasks, retries, bar) if tasks else []
        bar.close()
        failed = [(args[1:-1], err) for args, _, err in res if err is not None]
        summary["stages"][name] = {"written": sum(1 for _, ok, err in res if err is None and ok),
                                   "skipped": total - len(tasks), "failed": failed, "seconds": time.time() - t0}
        return not failed

    ok = run_stage(*stages[0])
    if ok:
        todo = [(_collision_task, (root, s, camera, spacing, device)) for s in scenes
                if not os.path.exists(collision_label_path(root, s))]
        ok = run_stage("collision labels", todo, len(scenes))
    if ok:
        from ..data.graspnet import GraspNetScenes

        ds = GraspNetScenes(root, split="all", camera=camera, num_points=None, scene_ids=list(scenes))
        frames = [(s, a) for s in scenes for a in range(len(ds.camera_poses(s)))]
        todo = [(_graspness_task, (root, s, camera, a, device)) for s, a in frames
                if not os.path.exists(graspness_path(root, s, camera, a))]
        run_stage("graspness", todo, len(frames))
    return summary
