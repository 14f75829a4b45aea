"""Per-object 6-DoF grasp labels in GraspNet-1Billion's format
(``grasp_label/<obj:03d>_labels.npz``).

For each label point p (surface samples, voxel-downsampled to about
``num_points``) and each grasp (view, angle, depth) of the grid in
``views.py`` (translation p, rotation R, depth d):

- jaws: both jaws of a gripper opened to ``max_width`` (0.1 m) close along
  the closing axis y on the line through p + (d / 2) x, half-way between the
  label point and the fingertips (our choice: a line through p itself grazes
  the surface when the approach follows the normal); ``antipodal.close_jaws``
  finds the contacts by ray casting and ``antipodal.required_friction`` the
  smallest mu at which both contact normals lie within atan(mu) of the contact
  line (Nguyen).
- score: the smallest mu of {0.1, ..., 1.0} >= that mu; -1 without both
  contacts, above 1.0, or when the centred gripper would need an opening above
  ``max_width``.
- width (offsets[..., 2]): 2 max(|s1|, |s2|) + ``width_margin`` (s the contact
  offsets along y from the line centre), at most ``max_width``.
- collision: graspnetAPI's gripper (fingers from the depth base 0.02 m
  behind the grasp point to the depth, 0.01 m wide, 0.02 m high, and the
  bottom plate behind them) holds a point of the object's own dense surface
  samples (``collision.finger_collision``, the evaluator's check).

Arrays: points [Np, 3] float32, offsets [Np, V, 12, 4, 3] float32 (angle,
depth, width), collision [Np, V, 12, 4] bool, scores [Np, V, 12, 4] float32
(V = 300 unless a view subset is asked for).
"""
import os

import numpy as np
import torch

from ..geometry.collision import finger_collision, gripper_reach, near_points
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
                        progress=False):
    """Grasp labels of one object (model frame): a dict with points, offsets,
    collision, scores (see the module docstring). ``views``: indices of a
    subset of the 300 views (default all)."""
    from tqdm import tqdm

    _check_mesh(mesh)
    points = label_points(mesh, num_points, seed)
    t, R, d, a = grasp_grid(points, views)
    V = len(t) // (len(points) * len(ANGLES) * len(DEPTHS)) if len(points) else 0
    shape = (len(points), V, len(ANGLES), len(DEPTHS))
    mu, width = jaw_contacts(mesh, t, R, d)
    scores = friction_score(mu).astype(np.float32)
    dense = surface_points(mesh, collision_spacing, seed=seed + 1)
    per_point = int(np.prod(shape[1:]))
    collision = np.zeros(len(t), dtype=bool)
    reach = gripper_reach(DEPTHS.max())
    for i in tqdm(range(len(points)), desc="object collisions", disable=not progress):
        near = dense[near_points(dense, points[i], reach)]
        sl = slice(i * per_point, (i + 1) * per_point)
        collision[sl] = finger_collision(near, t[sl], R[sl], width[sl], d[sl], device=device)[0]
    offsets = np.stack([a, d, width], -1).astype(np.float32)
    return {"points": points, "offsets": offsets.reshape(shape + (3,)), "collision": collision.reshape(shape),
            "scores": scores.reshape(shape)}


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
