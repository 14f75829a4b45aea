"""Per-scene collision labels and per-frame graspness (GraspNet-1B / GSNet
layouts) for a dataset root holding ``scenes/``, ``models/`` and
``grasp_label/``.

- ``collision_label/scene_<s:04d>/collision_labels.npz``: ``arr_i`` [Np, V,
  12, 4] bool for the i-th object of ``object_id_list.txt``: the object's label
  grasps, placed in the scene, collide with the scene (GSNet's model-free
  geometry, ``collision.model_free_collision``, any point counts). The scene
  cloud (table frame) is every object model's surface sampled about
  ``spacing`` apart at its pose (the meta poses of annotation 0 and that
  view's camera pose) plus the table top z = 0 as a grid of the same spacing
  around them. Our choice: GraspNet-1B's own collision labels were computed
  from its models; a noise-free cloud of the same models is the closest
  model-free equivalent.
- ``graspness/scene_<s:04d>/<camera>/<ann:04d>.npy`` [P, 1] float32, as GSNet's
  ``generate_graspness.py``: per label point the fraction of its grasps with
  0 < mu <= 0.8 that are collision-free in the scene; every workspace-masked
  cloud point (``GraspNetScenes.frame``, row-major) takes the value of its
  nearest label point (``pcgrasp.ops.knn``); min-max normalised per frame
  (a constant frame gives zeros where GSNet divides by zero).
"""
import os

import numpy as np
import torch

from ..geometry.collision import gripper_reach, model_free_collision, near_points
from ..geometry.grasps import grasp_array
from ..geometry.gripper import GRIPPER
from .grasp_labels import grasp_label_path, save_npz_atomic, surface_points
from ..geometry.views import ANGLES, DEPTHS, NUM_VIEWS, generate_views, grasp_rotations, viewpoint_params_to_matrix


def load_grasp_labels(root, obj_id):
    """(points, offsets, collision, scores, views) of grasp_label/<obj>_labels.npz;
    views = the view indices (all 300 unless the file stores a subset)."""
    path = grasp_label_path(root, obj_id)
    if not os.path.exists(path):
        raise FileNotFoundError(f"grasp labels: missing {path} (run `pcgrasp labels` first)")
    with np.load(path) as f:
        views = f["views"] if "views" in f.files else np.arange(NUM_VIEWS)
        return f["points"], f["offsets"], f["collision"], f["scores"], views


def _object_ids(root, scene_id):
    path = os.path.join(root, "scenes", f"scene_{scene_id:04d}", "object_id_list.txt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"GraspNet layout: missing file {path}")
    with open(path) as f:
        return [int(line) for line in f if line.strip()]


def frame_meta(scenes, scene_id, ann_id):
    """A frame's (object_ids [n], object poses [n, 4, 4] model -> camera,
    camera pose [4, 4] camera -> table) from its meta file, without reading
    the images."""
    from ..data.graspnet import read_meta

    path = os.path.join(scenes.root, "scenes", f"scene_{scene_id:04d}", scenes.camera, "meta", f"{ann_id:04d}.mat")
    ids, poses, _, _ = read_meta(path)
    return ids, poses, scenes.camera_pose(scene_id, ann_id)


def scene_object_poses(scenes, scene_id, camera_ann=0):
    """(object ids in object_id_list order, model -> table poses [n, 4, 4])."""
    ids = scenes.object_ids(scene_id)
    obj_ids, obj_poses, T = frame_meta(scenes, scene_id, camera_ann)
    pose_of = {int(o): p for o, p in zip(obj_ids, obj_poses)}
    missing = [o for o in ids if o not in pose_of]
    if missing:
        raise ValueError(f"scene {scene_id}: objects {missing} of object_id_list.txt have no pose in the meta")
    return ids, np.stack([T @ pose_of[o] for o in ids]) if ids else np.zeros((0, 4, 4))


def _model(root, obj_id):
    from ..data.synthetic.scenes import _model as load  # cached per process

    return load(root, obj_id)


def scene_cloud(root, obj_ids, poses, spacing=0.005, seed=0):
    """The model-free collision cloud of a scene in the table frame [M, 3]."""
    parts = []
    for o, T in zip(obj_ids, poses):
        p = surface_points(_model(root, o), spacing, seed=seed + int(o))
        parts.append(p @ T[:3, :3].T + T[:3, 3])
    objs = np.concatenate(parts) if parts else np.zeros((0, 3))
    if len(objs):
        pad = 0.15
        lo, hi = objs[:, :2].min(0) - pad, objs[:, :2].max(0) + pad
        gx, gy = (np.arange(lo[k], hi[k] + spacing / 2, spacing) for k in range(2))
        X, Y = np.meshgrid(gx, gy, indexing="ij")
        table = np.stack([X.ravel(), Y.ravel(), np.zeros(X.size)], 1)
        objs = np.concatenate([objs, table])
    return objs


def object_collision_in_scene(cloud, points, offsets, views, pose, device=None):
    """[Np, V, 12, 4] bool: the label grasps (model frame; ``pose`` model ->
    cloud frame) collide with ``cloud``."""
    Np, V = offsets.shape[:2]
    R = grasp_rotations(views)                                    # [V, A, 3, 3]
    Rw = np.einsum("ij,vajk->vaik", pose[:3, :3], R)
    Rg = np.broadcast_to(Rw[:, :, None], (V, len(ANGLES), len(DEPTHS), 3, 3)).reshape(-1, 3, 3)
    P = np.asarray(points, np.float64) @ pose[:3, :3].T + pose[:3, 3]
    reach = gripper_reach(DEPTHS.max())
    out = np.zeros((Np, V * len(ANGLES) * len(DEPTHS)), dtype=bool)
    for i in range(Np):
        near = cloud[near_points(cloud, P[i], reach)]
        w = offsets[i, ..., 2].reshape(-1)
        d = offsets[i, ..., 1].reshape(-1)
        out[i] = model_free_collision(near, np.broadcast_to(P[i], (len(w), 3)), Rg, w, d, device=device)
    return out.reshape(offsets.shape[:4])


def collision_label_path(root, scene_id):
    return os.path.join(root, "collision_label", f"scene_{scene_id:04d}", "collision_labels.npz")


def write_scene_collision_labels(root, scene_id, camera="realsense", spacing=0.005, overwrite=False, device=None):
    """Writes collision_label/scene_<s>/collision_labels.npz (skipped when
    present). Returns True when written."""
    from ..data.graspnet import GraspNetScenes

    path = collision_label_path(root, scene_id)
    if os.path.exists(path) and not overwrite:
        return False
    scenes = GraspNetScenes(root, split="all", camera=camera, num_points=None, scene_ids=[scene_id])
    ids, poses = scene_object_poses(scenes, scene_id)
    cloud = scene_cloud(root, ids, poses, spacing=spacing)
    arrays = {}
    for i, (o, T) in enumerate(zip(ids, poses)):
        points, offsets, _, _, views = load_grasp_labels(root, o)
        arrays[f"arr_{i}"] = object_collision_in_scene(cloud, points, offsets, views, T, device=device)
    save_npz_atomic(path, **arrays)
    return True


# ------------------------------------------------------------------ graspness

def point_graspness(scores, collision, fric_thresh=0.8):
    """[Np] float64: per label point the fraction of its grasps with
    0 < score <= fric_thresh and no collision (GSNet's definition; the
    denominator is the point's grasp count, 300 x 12 x 4 for a full grid)."""
    scores, collision = np.asarray(scores), np.asarray(collision, dtype=bool)
    if scores.shape != collision.shape or scores.ndim < 1:
        raise ValueError(f"scores and collision must have one shape [Np, ...], got {scores.shape} and "
                         f"{collision.shape}")
    ok = (scores <= fric_thresh) & (scores > 0) & ~collision
    n = int(np.prod(scores.shape[1:]))
    return ok.reshape(len(scores), -1).sum(1) / max(n, 1)


def transfer_graspness(cloud, label_points, label_graspness, device=None):
    """Graspness of every cloud point [P] float32: its nearest label point's
    value (``pcgrasp.ops.knn``, ties to the lower index), min-max normalised
    (all zeros when constant or empty)."""
    from .. import ops

    cloud = np.asarray(cloud)
    lp = np.asarray(label_points)
    g = np.asarray(label_graspness, dtype=np.float64)
    if cloud.ndim != 2 or cloud.shape[1] != 3 or lp.ndim != 2 or lp.shape[1] != 3:
        raise ValueError(f"cloud and label_points must be [N, 3], got {cloud.shape} and {lp.shape}")
    if g.shape != (len(lp),):
        raise ValueError(f"label_graspness must be [{len(lp)}] (one per label point), got {g.shape}")
    if len(cloud) == 0:
        return np.zeros(0, np.float32)
    if len(lp) == 0:
        raise ValueError("label_points is empty: no grasp labels to transfer")
    dt = torch.float64 if cloud.dtype == np.float64 else torch.float32
    q = torch.as_tensor(cloud, dtype=dt, device=device)[None]
    p = torch.as_tensor(lp, dtype=dt, device=device)[None]
    _, idx = ops.knn(q, p, 1)
    v = g[idx[0, :, 0].cpu().numpy()]
    lo, hi = v.min(), v.max()
    return ((v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)).astype(np.float32)


def graspness_path(root, scene_id, camera, ann_id):
    return os.path.join(root, "graspness", f"scene_{scene_id:04d}", camera, f"{ann_id:04d}.npy")


def scene_label_points(root, scene_id, fric_thresh=0.8):
    """Per object of object_id_list order: (obj_id, model-frame label points,
    point graspness) using the scene's collision labels."""
    path = collision_label_path(root, scene_id)
    if not os.path.exists(path):
        raise FileNotFoundError(f"graspness: missing {path} (collision labels first)")
    ids = _object_ids(root, scene_id)
    out = []
    with np.load(path) as coll:
        for i, o in enumerate(ids):
            points, _, _, scores, _ = load_grasp_labels(root, o)
            out.append((o, points, point_graspness(scores, coll[f"arr_{i}"], fric_thresh)))
    return out


def write_scene_graspness(root, scene_id, camera="realsense", anns=None, overwrite=False, device=None,
                          fric_thresh=0.8):
    """Writes graspness/scene_<s>/<camera>/<ann>.npy for the scene's frames
    (``anns``: a subset); finished files are skipped. Returns the number written."""
    from ..data.graspnet import GraspNetScenes

    scenes = GraspNetScenes(root, split="all", camera=camera, num_points=None, scene_ids=[scene_id])
    labels = scene_label_points(root, scene_id, fric_thresh)
    n_ann = len(scenes.camera_poses(scene_id))
    written = 0
    for a in (range(n_ann) if anns is None else anns):
        path = graspness_path(root, scene_id, camera, a)
        if os.path.exists(path) and not overwrite:
            continue
        f = scenes.frame(scene_id, a)
        pose_of = {int(o): p for o, p in zip(f["object_ids"], f["object_poses"])}
        pts = [lp.astype(np.float64) @ pose_of[o][:3, :3].T + pose_of[o][:3, 3] for o, lp, _ in labels]
        g = transfer_graspness(f["points"], np.concatenate(pts).astype(np.float32),
                               np.concatenate([gr for _, _, gr in labels]), device=device)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}.npy"
        np.save(tmp, g[:, None])
        os.replace(tmp, path)
        written += 1
    return written


def label_grasp_array(points, offsets, views, index, scores, object_id=-1, pose=None, height=GRIPPER.height):
    """[n, 17] GraspGroup rows (``geometry.grasps.grasp_array``, float64) of the label grid's
    grasps at ``index`` = (p, v, a, d), e.g. ``np.nonzero`` of a mask over [Np, V, A, D]: the
    rotation of view ``views[v]`` (graspnetAPI's ``viewpoint_params_to_matrix`` of minus the
    view) and in-plane angle ``offsets[..., 0]``, depth and width ``offsets[..., 1:3]``,
    translation the label point ``points[p]``, height the gripper's (0.02 m, graspnetAPI's);
    ``scores`` [n] the first column. In the model frame, or with ``pose`` [4, 4]
    (model -> camera) in the camera frame."""
    p, v, a, d = (np.asarray(i) for i in index)
    off = np.asarray(offsets)[p, v, a, d].astype(np.float64)
    R = viewpoint_params_to_matrix(-generate_views(NUM_VIEWS)[np.asarray(views)[v]], off[:, 0]).reshape(-1, 3, 3)
    t = np.asarray(points)[p].astype(np.float64)
    if pose is not None:
        T = np.asarray(pose, np.float64)
        R, t = np.einsum("ij,njk->nik", T[:3, :3], R), t @ T[:3, :3].T + T[:3, 3]
    return grasp_array(scores, off[:, 2], height, off[:, 1], R, t, object_id)


def scene_label_grasps(root, scene_id, ann_id, camera="realsense", fric_thresh=0.4, max_grasps=None, seed=0):
    """The labelled grasps of a frame as an [N, 17] GraspGroup array in its
    camera frame (as graspnetAPI's ``loadGrasp``): every grasp with
    0 < mu <= fric_thresh and no object or scene collision, score 1.1 - mu,
    height 0.02, object_id the GraspNet id; ``max_grasps``: a random subset."""
    from ..data.graspnet import GraspNetScenes

    ds = GraspNetScenes(root, split="all", camera=camera, num_points=None, scene_ids=[scene_id])
    obj_ids, obj_poses, _ = frame_meta(ds, scene_id, ann_id)
    pose_of = {int(o): p for o, p in zip(obj_ids, obj_poses)}
    rows = []
    with np.load(collision_label_path(root, scene_id)) as coll:
        for i, o in enumerate(_object_ids(root, scene_id)):
            points, offsets, collision, scores, views = load_grasp_labels(root, o)
            ok = (scores > 0) & (scores <= fric_thresh) & ~collision & ~coll[f"arr_{i}"]
            p, v, a, d = np.nonzero(ok)
            if len(p) == 0:
                continue
            rows.append(label_grasp_array(points, offsets, views, (p, v, a, d), 1.1 - scores[p, v, a, d],
                                          object_id=o, pose=pose_of[o]))
    g = np.concatenate(rows) if rows else np.zeros((0, 17))
    if max_grasps is not None and len(g) > max_grasps:
        g = g[np.sort(np.random.default_rng(seed).choice(len(g), max_grasps, replace=False))]
    return g
