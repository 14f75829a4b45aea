"""Inference and AP of the GSNet-style grasp detector (``detector``'s runs).

Per test frame (GSNet's ``test.py``): ``data.num_points`` points sampled as in
training (seeded per frame), the model in eval mode (argmax view),
``pred_decode`` ([num_seed, 17] per cloud) -> GSNet's model-free collision
detector against the frame's whole workspace cloud voxel-downsampled at
``eval.collision_voxel`` (0.01 m, centroid per voxel), ``eval.collision_thresh``
(0.01) and an approach distance of 0.05 m -> ``eval.grasp_nms`` (3 cm, 30
degrees) -> ``<dump>/scene_<s:04d>/<camera>/<ann:04d>.npy`` ([N, 17],
graspnetAPI's layout) -> ``eval.evaluate_scenes`` (AP, AP0.8, AP0.4 per split).
"""
import json
import os

import numpy as np
import torch

from ..data.graspnet import GraspNetScenes, sample_indices
from ..data.synthetic.scenes import parse_scene_ids
from ..eval.grasp_ap import dump_path
from .detector import check_config, load_detector, set_threads
from .engine import pick_device

SPLIT_RANGES = {"test_seen": range(100, 130), "test_similar": range(130, 160), "test_novel": range(160, 190)}
METRICS = ("AP", "AP0.8", "AP0.4")


# ---------------------------------------------------------------- post-processing
def voxel_downsample(points, voxel_size):
    """The centroid of the points in every occupied voxel of ``voxel_size``
    (as Open3D's ``voxel_down_sample``, which GSNet's collision detector uses),
    ordered by voxel."""
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3:
        raise ValueError(f"points must be [N, 3], got shape {P.shape}")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size!r}")
    if len(P) == 0:
        return P
    _, inv, counts = np.unique(np.floor(P / voxel_size).astype(np.int64), axis=0, return_inverse=True,
                               return_counts=True)
    inv = inv.reshape(-1)
    out = np.zeros((len(counts), 3))
    np.add.at(out, inv, P)
    return out / counts[:, None]


def collision_free(grasps, cloud, voxel_size=0.01, collision_thresh=0.01, approach_dist=0.05, device=None):
    """[N] bool: the grasps (an [N, 17] GraspGroup array) GSNet's test-time
    ``ModelFreeCollisionDetector`` keeps against the scene ``cloud`` [P, 3]
    (same frame) voxel-downsampled at ``voxel_size``; ``collision_thresh`` 0
    counts any point (``geometry.collision.model_free_collision``)."""
    from ..geometry import check_grasp_array, model_free_collision

    g = check_grasp_array(grasps)
    if len(g) == 0:
        return np.zeros(0, bool)
    scene = voxel_downsample(cloud, voxel_size)
    hit = model_free_collision(scene, g[:, 13:16], g[:, 4:13].reshape(-1, 3, 3), g[:, 1], g[:, 3],
                               heights=0.02, approach_dist=approach_dist, voxel_size=voxel_size,
                               collision_thresh=collision_thresh, device=device)
    return ~hit


def postprocess(grasps, cloud, collision_voxel=0.01, collision_thresh=0.01, nms=True, device=None):
    """Decoded grasps [N, 17] -> those without collision in ``cloud`` (when
    ``collision_thresh`` is not None), then grasp NMS (best first)."""
    from ..eval.grasp_ap import grasp_nms
    from ..geometry import check_grasp_array

    g = check_grasp_array(grasps)
    if collision_thresh is not None:
        g = g[collision_free(g, cloud, collision_voxel, collision_thresh, device=device)]
    if nms and len(g):
        g = g[grasp_nms(g)]
    return g


def _anns(cfg, n):
    a = cfg["eval"].get("anns")
    if a is None:
        return list(range(n))
    if isinstance(a, int):
        return list(range(min(a, n)))
    bad = [x for x in a if x >= n]
    if bad:
        raise ValueError(f"eval.anns {bad} are not annotations of the scenes (0-{n - 1})")
    return list(a)


# ---------------------------------------------------------------- inference and AP
@torch.no_grad()
def dump_grasps(model, cfg, scene_ids, dump_dir, device, progress=False, seed=0):
    """Runs the detector on the frames of ``scene_ids`` (``eval.anns``) and
    writes graspnetAPI dumps; returns the annotation ids."""
    from tqdm import tqdm

    from ..models.gsnet import pred_decode

    d, e = cfg["data"], cfg["eval"]
    camera = d.get("camera", "realsense")
    ds = GraspNetScenes(d["root"], "all", camera, num_points=None, scene_ids=scene_ids)
    anns = _anns(cfg, min(len(ds.camera_poses(s)) for s in ds.scene_ids))
    frames = [(s, a) for s in ds.scene_ids for a in anns]
    model.eval()
    bs = e.get("batch_size", 1)
    for i in tqdm(range(0, len(frames), bs), desc="detect", disable=not progress, leave=False):
        chunk = frames[i:i + bs]
        raw = [ds.frame(s, a) for s, a in chunk]   # every workspace point: the collision filter's scene
        # the network's input: num_points of them, sampled as GraspNetScenes.frame(num_points=...) does
        pts = []
        for (s, a), f in zip(chunk, raw):
            if len(f["points"]) == 0:
                raise ValueError(f"scene {s} ann {a}: no valid depth pixel to sample from")
            rng = np.random.default_rng([seed, s, a])
            pts.append(f["points"][sample_indices(len(f["points"]), d["num_points"], rng)])
        ep = {"point_clouds": torch.as_tensor(np.stack(pts), dtype=torch.float32, device=device)}
        preds = pred_decode(model(ep))
        for (s, a), f, g in zip(chunk, raw, preds):
            g = postprocess(g.cpu().numpy().astype(np.float64), f["points"], e.get("collision_voxel", 0.01),
                            e.get("collision_thresh", 0.01), device=e.get("collision_device"))
            path = dump_path(dump_dir, s, a, camera)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path[:-4] + ".tmp.npy"
            np.save(tmp, g.astype(np.float32))
            os.replace(tmp, path)
    return anns


def evaluate_detector(cfg, checkpoint, scenes=None, dump_dir=None, progress=False, log=print):
    """AP, AP0.8, AP0.4 per test split (and per scene) of a trained detector
    on ``scenes`` (default ``data.test_scenes``): dumps the grasps under
    ``dump_dir`` (default ``<run>/dump``) and scores them with
    ``eval.evaluate_scenes``. Writes ``<run>/metrics.json`` when evaluating
    the default scenes."""
    from ..eval.grasp_ap import evaluate_scenes

    check_config(cfg)
    set_threads(cfg)
    run_dir = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint)
    device = pick_device(cfg.get("device", "auto"))
    model = load_detector(checkpoint, device)
    ids = parse_scene_ids(scenes if scenes is not None else cfg["data"]["test_scenes"])
    dump_dir = dump_dir or os.path.join(run_dir, "dump")
    anns = dump_grasps(model, cfg, ids, dump_dir, device, progress, seed=cfg["eval"].get("seed", 0))
    r = evaluate_scenes(cfg["data"]["root"], dump_dir, ids, cfg["data"].get("camera", "realsense"), anns=anns,
                        progress=progress, device=cfg["eval"].get("collision_device"))
    out = {"splits": {k: v for k, v in r["splits"].items() if k in SPLIT_RANGES or len(r["splits"]) == 1},
           "scenes": {str(s): {k: v[k] for k in METRICS} for s, v in r["scenes"].items()},
           "anns": anns, "grasps_per_frame": _grasps_per_frame(dump_dir, ids, cfg, anns)}
    if scenes is None:
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump(out, f, indent=1)
    return out


def _grasps_per_frame(dump_dir, ids, cfg, anns):
    camera = cfg["data"].get("camera", "realsense")
    n = [len(np.load(dump_path(dump_dir, s, a, camera))) for s in ids for a in anns]
    return float(np.mean(n)) if n else 0.0
