"""Grasp AP with graspnetAPI's semantics (``eval_grasp`` / ``eval_scene`` of graspnetAPI
1.2.11; what it computes is written down in ``results/parity/graspnetapi_semantics.md``).

Grasp arrays: graspnetAPI's 17-column GraspGroup layout, one row per grasp
in the camera frame: ``[score, width, height, depth, R (9, row-major),
t (3), object_id]`` (``geometry.grasps``).

Per frame (``eval_frame``):

1. widths clipped to [0, max_width] (0.1 m);
2. grasp NMS (``grasp_nms``): in descending score, a grasp is dropped when a
   kept one is closer than 0.03 m in translation and 30 degrees in rotation;
3. model points (``model_points``): each object's PLY vertices, one point per
   occupied 0.008 m voxel (the mean of its vertices, voxels anchored at the
   vertices' minimum - 0.004 as Open3D's ``voxel_down_sample``), posed; each
   grasp goes to the object owning the model point nearest its translation;
4. the 10 best per object, then only those scoring at least the 50th best of
   these overall (ties kept, as graspnetAPI);
5. collision, per object: the scene (all model points + the table, a
   125 x 125 x 6 grid over [-0.5, 0.5]^2 x [-0.05, 0] m of the table frame,
   ``table_points``) cropped to the object's model points' bounding box
   +- 0.05 m; against that crop (``geometry.collision.finger_collision``:
   fingers from -0.02 to the depth, the bottom behind them) any point in a
   finger or the bottom collides, fewer than 10 points between the fingers is
   "empty"; both -> failure (-1); the gripper height is graspnetAPI's fixed
   0.02 m, not the array's column (for speed, only the crop's points that
   some gripper can reach are made and tested: the same result);
6. force closure of the rest on the assigned object's mesh
   (``geometry.jaws.jaw_contacts``): the jaws close on the fingertip line
   (t + depth x approach) from the grasp's width, each jaw travelling w/2 to
   the centre line; the smallest mu of (1.2, 1.0, ..., 0.2) passing the
   antipodal test with unsigned normals, going down from 1.2 and stopping at
   the first failure; -1 when 1.2 fails or a jaw finds no contact;
7. sorted by score: precision@k, k = 1..50, at mu in (0.2, 0.4, ..., 1.2):
   the grasps among the first k with 0 < mu_grasp <= mu, over k (missing
   grasps count as failures).

AP = 100 x the mean of precision@k over k and mu; AP0.8 / AP0.4 the mean
over k at mu = 0.8 / 0.4 (``ap_summary``), averaged over frames.

Where pcgrasp keeps its own exact geometry instead of graspnetAPI's numerics
(measured against graspnetAPI by ``tools/graspnet_parity.py``; figures in
``results/parity/``):

- contacts: exact ray-mesh intersections, where dex-net walks the jaw line in
  half-cell steps over a 100^3 SDF and accepts a crossing only under extra
  rules (so it misses some contacts, e.g. on thin parts);
- normals: the mesh's face normals, where dex-net fits a plane to SDF surface
  voxels within 1.5 cells (off by many degrees at edges and on oblique faces);
- ties: stable sorts (NMS, top 10, the ranking), where graspnetAPI's sorts
  order tied scores arbitrarily;
- poses: as given (the meta files' float64 poses), where graspnetAPI reads the
  annotation XML's 4-decimal quaternions into float32;
- a frame without grasps scores 0 (graspnetAPI raises).
"""
import functools
import os

import numpy as np
import torch

from ..geometry.collision import finger_collision
from ..geometry.grasps import check_grasp_array, grasp_array  # noqa: F401  (grasp_array: public here too)
from ..geometry.jaws import jaw_contacts
from ..geometry.gripper import GRIPPER

FRICTIONS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)
TOP_K = 50
PER_OBJECT = 10


def grasp_nms(grasps, translation_thresh=0.03, rotation_thresh=np.radians(30)):
    """Indices of the grasps kept by graspnetAPI's grasp NMS, best first: in
    descending score (stable on ties), a grasp is dropped when a kept one is
    closer than ``translation_thresh`` in translation and
    ``rotation_thresh`` in rotation angle (of R_k^T R_i).

    The close pairs come from a k-d tree over the translations, so the cost
    grows with the pairs within ``translation_thresh``, not with N^2."""
    from scipy.spatial import cKDTree

    g = check_grasp_array(grasps)
    order = np.argsort(-g[:, 0], kind="stable")
    n = len(order)
    if n == 0:
        return order
    t, R = g[order, 13:16].astype(np.float64), g[order, 4:13].astype(np.float64).reshape(-1, 3, 3)
    pairs = cKDTree(t).query_pairs(translation_thresh, output_type="ndarray")   # i < j, distance <= thresh
    if len(pairs):
        i, j = pairs[:, 0], pairs[:, 1]
        close = np.linalg.norm(t[i] - t[j], axis=1) < translation_thresh       # strict, as graspnetAPI
        tr = np.einsum("kab,kab->k", R[i], R[j])                               # trace(R_i^T R_j)
        close &= np.arccos(np.clip((tr - 1) / 2, -1, 1)) < rotation_thresh
        i, j = i[close], j[close]
    else:
        i = j = np.zeros(0, np.int64)
    if len(i) == 0:
        return order
    # suppression lists: for each grasp (in score order) the later ones it would drop
    by = np.argsort(i, kind="stable")
    i, j = i[by], j[by]
    starts = np.searchsorted(i, np.arange(n + 1))
    dropped = np.zeros(n, bool)
    for k in np.unique(i):
        if not dropped[k]:
            dropped[j[starts[k]:starts[k + 1]]] = True
    return order[~dropped]


def table_points(camera_pose, size=1.0, thickness=0.05, grid=0.008):
    """graspnetAPI's table: a grid of int(size / grid) x int(size / grid) x
    int(thickness / grid) points (125 x 125 x 6) spanning [-size/2, size/2]^2
    x [-thickness, 0] of the table frame (top at z = 0, centred on its
    origin), in the camera frame; ``camera_pose`` [4, 4] camera -> table."""
    xs, zs = _table_axes(size, thickness, grid)
    X, Y, Z = np.meshgrid(xs, xs, zs, indexing="ij")
    Tinv = np.linalg.inv(np.asarray(camera_pose, dtype=np.float64))
    return np.stack([X.ravel(), Y.ravel(), Z.ravel()], 1) @ Tinv[:3, :3].T + Tinv[:3, 3]


@functools.lru_cache(maxsize=8)
def _table_axes(size, thickness, grid):
    nxy, nz = int(size / grid), int(thickness / grid)
    xs = np.linspace(0.0, size, nxy) - size / 2
    zs = np.linspace(0.0, thickness, nz) - thickness
    xs.flags.writeable = zs.flags.writeable = False
    return xs, zs


def _inside(P, lo, hi):
    """[N] bool: P [N, 3] strictly inside the box (lo, hi) (column by column, faster than a row reduction)."""
    m = (P[:, 0] > lo[0]) & (P[:, 0] < hi[0])
    m &= (P[:, 1] > lo[1]) & (P[:, 1] < hi[1])
    m &= (P[:, 2] > lo[2]) & (P[:, 2] < hi[2])
    return m


def table_points_near(camera_pose, centers, radii, lo, hi, size=1.0, thickness=0.05, grid=0.008):
    """The points of ``table_points`` strictly inside the camera-frame box (lo,
    hi) that may lie within ``radii`` [n] of ``centers`` [n, 3] (camera frame):
    all of those, and only the grid points of the table-frame bounding box of
    the spheres that reach the table (a superset, cut to the box). With the
    spheres around grasps that hold their grippers, this is every table point
    that can change their collision test, without making the rest of the grid."""
    T = np.asarray(camera_pose, dtype=np.float64)
    xs, zs = _table_axes(size, thickness, grid)
    c = np.asarray(centers, dtype=np.float64) @ T[:3, :3].T + T[:3, 3]   # table frame
    r = np.asarray(radii, dtype=np.float64)
    eps = 1e-9
    near = (c[:, 2] - r < zs[-1] + eps) & (c[:, 2] + r > zs[0] - eps)
    if not near.any():
        return np.zeros((0, 3))
    a, b = (c[near] - r[near, None]).min(0) - eps, (c[near] + r[near, None]).max(0) + eps
    ix, iy, iz = (ax[np.searchsorted(ax, a[k]):np.searchsorted(ax, b[k], side="right")]
                  for k, ax in enumerate((xs, xs, zs)))
    if not (len(ix) and len(iy) and len(iz)):
        return np.zeros((0, 3))
    Tinv = np.linalg.inv(T)
    R, t = Tinv[:3, :3], Tinv[:3, 3]
    # the lattice in the camera frame as a sum of its three axes' offsets (broadcast, no meshgrid)
    P = ((ix[:, None] * R[:, 0])[:, None, None] + (iy[:, None] * R[:, 1])[None, :, None]
         + (iz[:, None] * R[:, 2] + t)[None, None]).reshape(-1, 3)
    return P[_inside(P, np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))]


def model_points(vertices, voxel_size=0.008):
    """graspnetAPI's model points: ``vertices`` [V, 3] (a PLY's vertices), one
    point per occupied voxel of ``voxel_size``, the mean of the vertices in it;
    voxels anchored at min(vertices) - voxel_size / 2 (Open3D's
    ``voxel_down_sample``). [K, 3] float64, in ascending voxel order."""
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
        raise ValueError(f"vertices must be a finite [V, 3] array, got shape {v.shape}")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size!r}")
    if len(v) == 0:
        return np.zeros((0, 3))
    cell = np.floor((v - (v.min(0) - voxel_size / 2)) / voxel_size).astype(np.int64)
    _, inverse, counts = np.unique(cell, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    out = np.zeros((len(counts), 3))
    np.add.at(out, inverse, v)
    return out / counts[:, None]


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
               voxel_size=0.008, empty_thresh=10, crop_margin=0.05, models=None, device=None):
    """Evaluates one frame's grasps (camera frame) against the objects
    ``meshes`` (model frame) at ``poses`` [n, 4, 4] (model -> camera) with the
    table under ``camera_pose`` (camera -> table); see the module docstring.
    ``models``: each object's model points in its model frame (default
    ``model_points(mesh.vertices)``; pass them to reuse them over frames).
    Returns a dict: grasps [K, 17] (the evaluated ones, best first), mu [K]
    (-1: failure), collision [K] bool (collision or empty), object [K] index
    into meshes, accuracy [top_k, 6]."""
    from .. import ops

    g = check_grasp_array(grasps).copy()
    poses = np.asarray(poses, dtype=np.float64)
    if poses.shape != (len(meshes), 4, 4):
        raise ValueError(f"poses must be [{len(meshes)}, 4, 4] (one per mesh), got shape {poses.shape}")
    if models is None:
        models = [model_points(m.vertices, voxel_size) for m in meshes]
    elif len(models) != len(meshes):
        raise ValueError(f"models must hold one point array per mesh ({len(meshes)}), got {len(models)}")
    empty = {"grasps": np.zeros((0, 17)), "mu": np.zeros(0), "collision": np.zeros(0, bool),
             "object": np.zeros(0, np.int64), "accuracy": np.zeros((top_k, len(FRICTIONS)))}
    if len(g) == 0 or len(meshes) == 0:
        return empty
    g[:, 1] = np.clip(g[:, 1], 0, max_width)
    g = g[grasp_nms(g)]
    posed = [np.asarray(p, dtype=np.float64) @ T[:3, :3].T + T[:3, 3] for p, T in zip(models, poses)]
    seg = np.concatenate([np.full(len(p), i) for i, p in enumerate(posed)])
    scene = np.concatenate(posed)
    if len(scene) == 0:
        return empty
    _, idx = ops.knn(torch.as_tensor(g[:, 13:16])[None], torch.as_tensor(scene)[None], 1)
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
    coll = np.zeros(len(g), bool)
    mu = np.full(len(g), -1.0)
    # Each object's crop (scene points strictly inside its model points' box +- crop_margin), limited to
    # the box that its grasps' grippers can reach: points outside every gripper change no result, so the
    # table grid is only made where it matters.
    b_f = GRIPPER.depth_base + GRIPPER.finger_width
    for i in range(len(meshes)):
        sel = np.flatnonzero(owner == i)
        if not len(sel):
            continue
        if not len(posed[i]):
            coll[sel] = True  # no model points: no crop, nothing between the fingers
            continue
        t = g[sel, 13:16]
        r = np.sqrt(np.maximum(b_f, np.abs(g[sel, 3])) ** 2 + (g[sel, 1] / 2 + GRIPPER.finger_width) ** 2
                    + (GRIPPER.height / 2) ** 2) * (1 + 1e-9) + 1e-9
        lo = np.maximum(posed[i].min(0) - crop_margin, (t - r[:, None]).min(0))
        hi = np.minimum(posed[i].max(0) + crop_margin, (t + r[:, None]).max(0))
        if (lo >= hi).any():
            crop = np.zeros((0, 3))
        else:
            crop = np.concatenate([scene[_inside(scene, lo, hi)],
                                   table_points_near(camera_pose, t, r, lo, hi, grid=voxel_size)])
        c, e = finger_collision(crop, g[sel, 13:16], g[sel, 4:13].reshape(-1, 3, 3), g[sel, 1], g[sel, 3],
                                empty_thresh=empty_thresh, device=device)
        coll[sel] = c | e
        sel = sel[~coll[sel]]
        if len(sel):
            # grasps into the model frame (the mesh and its ray-casting BVH stay as they are, cached)
            Ti = np.linalg.inv(poses[i])
            gm = g[sel].copy()
            gm[:, 4:13] = (Ti[:3, :3] @ g[sel, 4:13].reshape(-1, 3, 3)).reshape(-1, 9)
            gm[:, 13:16] = g[sel, 13:16] @ Ti[:3, :3].T + Ti[:3, 3]
            mu[sel] = force_closure_mu(meshes[i], gm)
    return {"grasps": g, "mu": mu, "collision": coll, "object": owner, "accuracy": precision_at_k(mu, top_k)}


def dump_path(dump_dir, scene_id, ann_id, camera="realsense"):
    """graspnetAPI's dump layout: ``<dump_dir>/scene_<s:04d>/<camera>/<ann:04d>.npy``."""
    return os.path.join(dump_dir, f"scene_{int(scene_id):04d}", camera, f"{int(ann_id):04d}.npy")


def read_dump(dump_dir, scene_id, camera, ann_id):
    """A frame's dumped [N, 17] array (``dump_path``)."""
    path = dump_path(dump_dir, scene_id, ann_id, camera)
    if not os.path.exists(path):
        raise FileNotFoundError(f"missing grasp file {path}")
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
    missing = [dump_path(dump_dir, s, a, camera) for s, a in frames
               if not os.path.exists(dump_path(dump_dir, s, a, camera))]
    if missing:  # before any frame is evaluated
        raise FileNotFoundError(f"missing grasp file {missing[0]}"
                                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    points, models = {}, {}  # meshes and model points per object, loaded once
    for s, a in tqdm(frames, desc="evaluate", disable=not progress):
        obj_ids, obj_poses, camera_pose = frame_meta(ds, s, a)
        for o in obj_ids:
            if int(o) not in models:
                models[int(o)] = _model(root, int(o))
                points[int(o)] = model_points(models[int(o)].vertices)
        meshes = [models[int(o)] for o in obj_ids]
        r = eval_frame(read_dump(dump_dir, s, camera, a), meshes, obj_poses, camera_pose,
                       models=[points[int(o)] for o in obj_ids], device=device)
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
