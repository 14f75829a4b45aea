"""Per-object 6-DoF grasp labels in GraspNet-1Billion's format
(``grasp_label/<obj:03d>_labels.npz``), by the rule graspnetAPI's evaluator
judges grasps with, so a detector trained on them is judged by the rule it
learned.

For each label point p (surface samples, voxel-downsampled to about
``num_points``) and each grasp (view, angle, depth) of the grid in
``geometry.views`` (translation p, rotation R, depth d):

- jaws (``geometry.jaws.jaw_contacts``): a gripper opened to ``max_width``
  (0.1 m) closes on its fingertip line, centre p + d x, each jaw moving
  from its open end to that centre (w/2); contacts by ray casting, the
  smallest mu at which both (unsigned) contact normal lines lie within
  atan(mu) of the contact line (Nguyen; dex-net's force closure).
- score: the smallest mu of {0.1, ..., 1.0} >= that mu; -1 without both
  contacts or above 1.0.
- width (offsets[..., 2]): 2 max(|s1|, |s2|) + ``width_margin`` (s the contact
  offsets along y from the line centre), at most ``max_width``.
- collision: graspnetAPI's gripper (fingers from the depth base 0.02 m
  behind the grasp point to the depth, 0.01 m wide, 0.02 m high, and the
  bottom plate behind them) holds a point of the object's own dense surface
  samples (``geometry.collision.finger_collision``'s test, the evaluator's check,
  per label point by ``shared_center_finger_collision``).

Work is done ``chunk_points`` label points at a time (rays, collision checks and
their temporaries), so peak memory does not grow with the object; ``points``
labels a subset of the label points and ``views`` a subset of the views
without computing the rest.

Arrays: points [Np, 3] float32, offsets [Np, V, 12, 4, 3] float32 (angle,
depth, width), collision [Np, V, 12, 4] bool, scores [Np, V, 12, 4] float32
(V = 300 unless a view subset is asked for).
"""
import os

import numpy as np
import torch

from ..geometry.collision import gripper_reach, near_points, shared_center_finger_collision
from ..geometry.jaws import jaw_contacts
from ..geometry.views import ANGLES, DEPTHS, FRICTIONS, NUM_VIEWS, grasp_rotations


def _check_mesh(mesh):
    if not hasattr(mesh, "vertices") or not hasattr(mesh, "faces") or len(mesh.faces) == 0:
        raise ValueError("mesh must be a trimesh.Trimesh with faces")


def surface_points(mesh, spacing, seed=0, oversample=8):
    """Surface samples about ``spacing`` apart: area / spacing^2 * oversample
    random samples (seeded), one kept per voxel of ``spacing``
    (``pcgrasp.ops.voxelize``). [K, 3] float64."""
    from .. import ops

    _check_mesh(mesh)
    if not spacing > 0:
        raise ValueError(f"spacing must be > 0, got {spacing!r}")
    n = int(max(64, np.ceil(mesh.area / spacing ** 2 * oversample)))
    pts, _ = _sample(mesh, n, seed)
    _, _, first = ops.voxelize(torch.as_tensor(pts)[None], float(spacing))
    return pts[np.sort(first.numpy())]


def _sample(mesh, n, seed):
    import trimesh

    return trimesh.sample.sample_surface(mesh, n, seed=seed)


def label_points(mesh, num_points=300, seed=0):
    """About ``num_points`` surface points: voxel-downsampled at the spacing
    sqrt(area / num_points). [K, 3] float32."""
    _check_mesh(mesh)
    if not (isinstance(num_points, (int, np.integer)) and num_points >= 1):
        raise ValueError(f"num_points must be an integer >= 1, got {num_points!r}")
    return surface_points(mesh, float(np.sqrt(mesh.area / num_points)), seed=seed).astype(np.float32)


def grasp_grid(points, views=None):
    """The label grid of grasps at ``points`` [Np, 3] flattened in (point, view,
    angle, depth) order: (translations [G, 3], rotations [G, 3, 3], depths [G],
    angles [G]) with G = Np * V * 12 * 4."""
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3:
        raise ValueError(f"points must be [Np, 3], got shape {P.shape}")
    Rv = grasp_rotations(views)                       # [V, A, 3, 3]
    V, A, D = Rv.shape[0], len(ANGLES), len(DEPTHS)
    shape = (len(P), V, A, D)
    t = np.broadcast_to(P[:, None, None, None, :], shape + (3,)).reshape(-1, 3)
    R = np.broadcast_to(Rv[None, :, :, None], shape + (3, 3)).reshape(-1, 3, 3)
    d = np.broadcast_to(DEPTHS, shape).reshape(-1)
    a = np.broadcast_to(ANGLES[None, None, :, None], shape).reshape(-1)
    return t, R, d, a


def friction_score(mu):
    """Smallest mu of the grid {0.1, ..., 1.0} that is >= ``mu`` (array), -1
    where none is (mu > 1.0, inf or nan)."""
    mu = np.asarray(mu, dtype=np.float64)
    k = np.searchsorted(FRICTIONS, np.where(np.isfinite(mu), mu, np.inf) - 1e-9, side="left")
    return np.where(k < len(FRICTIONS), FRICTIONS[np.minimum(k, len(FRICTIONS) - 1)], -1.0)


def object_grasp_labels(mesh, num_points=300, views=None, seed=0, collision_spacing=0.005, device=None,
                        progress=False, points=None, chunk_points=8):
    """Grasp labels of one object (model frame): a dict with points, offsets,
    collision, scores (see the module docstring). ``views``: indices of a
    subset of the 300 views (default all); ``points``: indices of a subset of
    the label points (default all; the dict then also holds
    ``point_indices``); ``chunk_points``: label points per batch of work."""
    from tqdm import tqdm

    _check_mesh(mesh)
    if not (isinstance(chunk_points, (int, np.integer)) and chunk_points >= 1):
        raise ValueError(f"chunk_points must be an integer >= 1, got {chunk_points!r}")
    all_points = label_points(mesh, num_points, seed)
    if points is None:
        idx = np.arange(len(all_points))
    else:
        idx = np.asarray(points).reshape(-1)
        if idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= len(all_points))):
            raise ValueError(f"points must be integer indices in [0, {len(all_points)}) (the object's label points), "
                             f"got {points!r}")
    P = all_points[idx]
    V = len(grasp_rotations(views))
    shape = (len(P), V, len(ANGLES), len(DEPTHS))
    per_point = int(np.prod(shape[1:]))
    scores = np.zeros(shape, np.float32).reshape(len(P), per_point)
    offsets = np.zeros((len(P), per_point, 3), np.float32)
    collision = np.zeros((len(P), per_point), bool)
    dense = surface_points(mesh, collision_spacing, seed=seed + 1)
    reach = gripper_reach(DEPTHS.max())
    for s in tqdm(range(0, len(P), chunk_points), desc="object labels", disable=not progress):
        e = min(len(P), s + chunk_points)
        t, R, d, a = grasp_grid(P[s:e], views)
        mu, width = jaw_contacts(mesh, t, R, d)
        scores[s:e] = friction_score(mu).astype(np.float32).reshape(e - s, per_point)
        offsets[s:e] = np.stack([a, d, width], -1).reshape(e - s, per_point, 3)
        Rk = R[:per_point:len(DEPTHS)]                              # [V * A] rotations, shared by every point
        for i in range(s, e):
            near = dense[near_points(dense, P[i], reach)]
            wk = width[(i - s) * per_point:(i - s + 1) * per_point].reshape(-1, len(DEPTHS))
            collision[i] = shared_center_finger_collision(near, P[i], Rk, wk, DEPTHS, device=device).reshape(-1)
    out = {"points": P, "offsets": offsets.reshape(shape + (3,)), "collision": collision.reshape(shape),
           "scores": scores.reshape(shape)}
    if points is not None:
        out["point_indices"] = idx.astype(np.int64)
    return out


def save_npz_atomic(path, **arrays):
    """np.savez_compressed to a temporary name in the same folder, then rename."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def grasp_label_path(root, obj_id):
    return os.path.join(root, "grasp_label", f"{int(obj_id):03d}_labels.npz")


def write_object_labels(root, obj_id, num_points=300, views=None, seed=0, overwrite=False, device=None):
    """Labels of root/models/<obj>/nontextured.ply to
    root/grasp_label/<obj:03d>_labels.npz (skipped when present). Returns
    True when written."""
    import trimesh

    path = grasp_label_path(root, obj_id)
    if os.path.exists(path) and not overwrite:
        return False
    model = os.path.join(root, "models", f"{int(obj_id):03d}", "nontextured.ply")
    if not os.path.exists(model):
        raise FileNotFoundError(f"grasp labels: missing object model {model}")
    mesh = trimesh.load(model, process=False)
    lab = object_grasp_labels(mesh, num_points=num_points, views=views, seed=seed + int(obj_id), device=device)
    if views is not None:  # a view subset: stored so that readers rebuild the rotations (not in GraspNet-1B)
        lab["views"] = np.asarray(views, dtype=np.int64).reshape(-1)
    save_npz_atomic(path, **lab)
    return True


__all__ = ["NUM_VIEWS", "friction_score", "grasp_grid", "label_points", "object_grasp_labels",
           "surface_points", "write_object_labels", "save_npz_atomic", "grasp_label_path"]
