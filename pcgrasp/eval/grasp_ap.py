"""Grasp AP with graspnetAPI's semantics (``eval_grasp`` / ``eval_scene``).

Grasp arrays: graspnetAPI's 17-column GraspGroup layout, one row per grasp
in the camera frame: ``[score, width, height, depth, R (9, row-major),
t (3), object_id]``.

Per frame (``eval_frame``):

1. widths clipped to [0, max_width] (0.1 m);
2. grasp NMS (``grasp_nms``): in descending score, a grasp is dropped when a
   kept one is closer than 0.03 m in translation and 30 degrees in rotation;
3. each grasp goes to the object owning the model point nearest its
   translation (models sampled on a ``voxel_size`` 0.008 m grid, posed);
4. the 10 best per object, then only those scoring at least the 50th best of
   these overall (ties kept, as graspnetAPI);
5. collision (``collision.finger_collision``: fingers from -0.02 to the
   depth, the bottom behind them) with the posed models and a table slab
   (1 m x 1 m x 0.05 m under the table top, 0.008 m grid), or fewer than 10
   points between the fingers ("empty") -> failure (-1); the gripper height
   is graspnetAPI's fixed 0.02 m, not the array's column;
6. force closure of the rest on the assigned object's mesh: the jaws close
   from the grasp's width as ``labels.grasp_labels.jaw_contacts`` does (on
   the line half-way to the fingertips), the smallest mu of (1.2, 1.0, ...,
   0.2) passing the antipodal test, going down from 1.2 and stopping at the
   first failure; -1 when 1.2 fails;
7. sorted by score: precision@k, k = 1..50, at mu in (0.2, 0.4, ..., 1.2):
   the grasps among the first k with 0 < mu_grasp <= mu, over k (missing
   grasps count as failures).

AP = 100 x the mean of precision@k over k and mu; AP0.8 / AP0.4 the mean
over k at mu = 0.8 / 0.4 (``ap_summary``), averaged over frames.
Deviations: dexnet's SDF contact search is replaced by ray casting on the
mesh (``labels.antipodal``); the closing line (half-way to the fingertips)
is ours, the same as in the labels.
"""
import numpy as np
import torch

from ..geometry.collision import finger_collision
from ..geometry.grasps import check_grasp_array, grasp_array  # noqa: F401  (grasp_array: public here too)
from ..geometry.jaws import jaw_contacts
from ..labels.grasp_labels import surface_points

FRICTIONS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)
TOP_K = 50
PER_OBJECT = 10


def grasp_nms(grasps, translation_thresh=0.03, rotation_thresh=np.radians(30)):
    """Indices of the grasps kept by graspnetAPI's grasp NMS, best first."""
    g = check_grasp_array(grasps)
    order = np.argsort(-g[:, 0], kind="stable")
    t, R = g[order, 13:16], g[order, 4:13].reshape(-1, 3, 3)
    kept = []
    for i in range(len(order)):
        if kept:
            k = np.asarray(kept)
            close = np.linalg.norm(t[k] - t[i], axis=1) < translation_thresh
            if close.any():
                # rotation angle of R_k^T R_i: arccos((trace - 1) / 2)
                tr = np.einsum("kab,ab->k", R[k[close]], R[i])
                ang = np.arccos(np.clip((tr - 1) / 2, -1, 1))
                if (ang < rotation_thresh).any():
                    continue
        kept.append(i)
    return order[np.asarray(kept, dtype=np.int64)]


def table_points(camera_pose, center_xy=(0.0, 0.0), half=0.5, thickness=0.05, grid=0.008):
    """The table slab (top at z = 0 of the table frame) as a point grid in the
    camera frame; ``camera_pose`` [4, 4] camera -> table."""
    xs = np.arange(-half, half + 1e-9, grid)
    zs = np.arange(0.0, -thickness - 1e-9, -grid)
    X, Y, Z = np.meshgrid(xs + center_xy[0], xs + center_xy[1], zs, indexing="ij")
    P = np.stack([X.ravel(), Y.ravel(), Z.ravel()], 1)
    Tinv = np.linalg.inv(np.asarray(camera_pose, dtype=np.float64))
    return P @ Tinv[:3, :3].T + Tinv[:3, 3]


def precision_at_k(mus, top_k=TOP_K, frictions=FRICTIONS):
    """[top_k, len(frictions)]: precision@k of grasps (already sorted by
    confidence) with their smallest passing mu ``mus`` (-1 / 0: failure)."""
    s = np.asarray(mus, dtype=np.float64)[:top_k]
    acc = np.zeros((top_k, len(frictions)))
    for j, f in enumerate(frictions):
        ok = np.cumsum((s <= f + 1e-9) & (s > 0))
        hits = np.concatenate([ok, np.full(top_k - len(ok), ok[-1] if len(ok) else 0)])
        acc[:, j] = hits / np.arange(1, top_k + 1)
    return acc


def ap_summary(accuracies, frictions=FRICTIONS):
    """{AP, AP0.8, AP0.4} (percent) from precision@k tables [F, top_k, len(frictions)]."""
    a = np.asarray(accuracies, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.size == 0:
        return {"AP": float("nan"), "AP0.8": float("nan"), "AP0.4": float("nan")}
    fr = list(np.round(frictions, 6))
    return {"AP": 100 * float(a.mean()), "AP0.8": 100 * float(a[:, :, fr.index(0.8)].mean()),
            "AP0.4": 100 * float(a[:, :, fr.index(0.4)].mean())}


def force_closure_mu(mesh, grasps, frictions=FRICTIONS):
    """[N] smallest passing mu of ``frictions`` going down from the largest,
    -1 when the largest fails (grasps [N, 17] on ``mesh`` in the same frame)."""
    g = check_grasp_array(grasps)
    out = np.full(len(g), -1.0)
    ok = g[:, 1] > 0
    if not ok.any():
        return out
    mu, _ = jaw_contacts(mesh, g[ok, 13:16], g[ok, 4:13].reshape(-1, 3, 3), g[ok, 3], max_width=g[ok, 1])
    fr = np.sort(np.asarray(frictions, dtype=np.float64))
    # passing is monotone in mu, so "down from 1.2 until the first failure" is the smallest passing one
    k = np.searchsorted(fr, mu - 1e-9, side="left")
    out[ok] = np.where(k < len(fr), fr[np.minimum(k, len(fr) - 1)], -1.0)
    return out


def eval_frame(grasps, meshes, poses, camera_pose, top_k=TOP_K, per_object=PER_OBJECT, max_width=0.1,
               voxel_size=0.008, empty_thresh=10, device=None):
    """Evaluates one frame's grasps (camera frame) against the objects
    ``meshes`` (model frame) at ``poses`` [n, 4, 4] (model -> camera) with the
    table under ``camera_pose`` (camera -> table). Returns a dict: grasps
    [K, 17] (the evaluated ones, best first), mu [K] (-1: failure),
    collision [K] bool, object [K] index into meshes, accuracy [top_k, 6]."""
    from .. import ops

    g = check_grasp_array(grasps).copy()
    poses = np.asarray(poses, dtype=np.float64)
    if poses.shape != (len(meshes), 4, 4):
        raise ValueError(f"poses must be [{len(meshes)}, 4, 4] (one per mesh), got shape {poses.shape}")
    empty = {"grasps": np.zeros((0, 17)), "mu": np.zeros(0), "collision": np.zeros(0, bool),
             "object": np.zeros(0, np.int64), "accuracy": np.zeros((top_k, len(FRICTIONS)))}
    if len(g) == 0 or len(meshes) == 0:
        return empty
    g[:, 1] = np.clip(g[:, 1], 0, max_width)
    g = g[grasp_nms(g)]
    models, seg = [], []
    for i, (m, T) in enumerate(zip(meshes, poses)):
        p = surface_points(m, voxel_size, seed=i)
        models.append(p @ T[:3, :3].T + T[:3, 3])
        seg.append(np.full(len(p), i))
    models, seg = np.concatenate(models), np.concatenate(seg)
    _, idx = ops.knn(torch.as_tensor(g[:, 13:16])[None], torch.as_tensor(models)[None], 1)
    owner = seg[idx[0, :, 0].numpy()]
    # top per object, then those at least as good as the top_k-th overall
    pre = [np.flatnonzero(owner == i)[:per_object] for i in range(len(meshes))]  # g is sorted by score
    pre = np.concatenate(pre)
    if len(pre) == 0:
        return empty
    cut = np.sort(g[pre, 0])[::-1][min(top_k, len(pre)) - 1]
    keep = pre[g[pre, 0] >= cut]
    keep = keep[np.argsort(-g[keep, 0], kind="stable")]
    g, owner = g[keep], owner[keep]
    lo, hi = models.min(0), models.max(0)
    T_table_cam = np.asarray(camera_pose, dtype=np.float64)
    centre = (T_table_cam[:3, :3] @ ((lo + hi) / 2) + T_table_cam[:3, 3])[:2]
    scene = np.concatenate([models, table_points(camera_pose, centre)])
    c, e = finger_collision(scene, g[:, 13:16], g[:, 4:13].reshape(-1, 3, 3), g[:, 1], g[:, 3],
                            empty_thresh=empty_thresh, device=device)
    coll = c | e
    mu = np.full(len(g), -1.0)
    for i in range(len(meshes)):
        sel = np.flatnonzero((owner == i) & ~coll)
        if len(sel):
            m = meshes[i].copy().apply_transform(poses[i])
            mu[sel] = force_closure_mu(m, g[sel])
    return {"grasps": g, "mu": mu, "collision": coll, "object": owner, "accuracy": precision_at_k(mu, top_k)}


def read_dump(dump_dir, scene_id, camera, ann_id):
    """graspnetAPI's dump layout: dump_dir/scene_<s:04d>/<camera>/<ann:04d>.npy, an [N, 17] array."""
    import os

    path = os.path.join(dump_dir, f"scene_{scene_id:04d}", camera, f"{ann_id:04d}.npy")
    if not os.path.exists(path):
        raise FileNotFoundError(f"evaluate-grasps: missing grasp file {path}")
    return check_grasp_array(np.load(path), name=path)


def evaluate_scenes(root, dump_dir, scene_ids, camera="realsense", anns=None, progress=False, device=None):
    """Evaluates dumped grasps of ``scene_ids`` of a GraspNet-1B-layout root.
    Returns {"scenes": {scene: {"accuracy": [A, 50, 6], "AP", "AP0.8",
    "AP0.4"}}, "splits": {split: {AP, AP0.8, AP0.4}}} (splits: test_seen
    100-129, test_similar 130-159, test_novel 160-189, and "all" asked)."""
    from tqdm import tqdm

    from ..data.graspnet import GraspNetScenes
    from ..data.synthetic.scenes import _model
    from ..labels.scene_labels import frame_meta

    ds = GraspNetScenes(root, split="all", camera=camera, num_points=None, scene_ids=list(scene_ids))
    per_scene = {}
    frames = [(s, a) for s in ds.scene_ids for a in (range(len(ds.camera_poses(s))) if anns is None else anns)]
    for s, a in tqdm(frames, desc="evaluate", disable=not progress):
        obj_ids, obj_poses, camera_pose = frame_meta(ds, s, a)
        meshes = [_model(root, int(o)) for o in obj_ids]
        r = eval_frame(read_dump(dump_dir, s, camera, a), meshes, obj_poses, camera_pose, device=device)
        per_scene.setdefault(s, []).append(r["accuracy"])
    out = {"scenes": {}, "splits": {}}
    for s, acc in per_scene.items():
        out["scenes"][s] = {"accuracy": np.stack(acc), **ap_summary(np.stack(acc))}
    splits = {"test_seen": range(100, 130), "test_similar": range(130, 160), "test_novel": range(160, 190),
              "all": range(0, 190)}
    for name, r in splits.items():
        acc = [out["scenes"][s]["accuracy"] for s in per_scene if s in r]
        if acc:
            out["splits"][name] = ap_summary(np.concatenate(acc))
    return out
