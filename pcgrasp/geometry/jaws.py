"""Antipodal (Nguyen) force-closure test of parallel-jaw grasps on a mesh,
plus gripper collisions with the object (along the approach) and with a table plane.

Gripper frame as graspnetAPI: for each grasp a centre c [3] and a rotation R
[3, 3] whose columns are x = approach (from the palm towards the object),
y = closing axis (the jaws move along it), z = height (x cross y). A planar
top-down grasp (Dex-Net) is the special case x = camera viewing direction.

The jaws close along the line c + s*y, s in [-w/2, w/2] (w = the opening
before closing): each jaw is modelled as a ray along that line from its open
position inwards (trimesh ray casting, Embree when installed); its first hit
within the stroke is the contact. Both contacts must exist, and the line
through them must lie inside both friction cones: the angle between each
inward surface normal and the contact line at most atan(mu). Each finger is
a box of ``finger_width`` (along y) x ``finger_height`` (along z) reaching
from the fingertip at x = ``tip_depth`` back to ``tip_depth - finger_length``.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ParallelJawGripper:
    """Dimensions in metres (defaults: a Robotiq 2F-85-like opening, graspnetAPI's finger sizes)."""
    max_width: float = 0.085     # largest opening
    finger_width: float = 0.01   # thickness of a finger along the closing axis
    finger_height: float = 0.02  # extent of a finger along z
    finger_length: float = 0.04  # from the fingertip back towards the palm along -x
    tip_depth: float = 0.0       # fingertips this far past the contact line along +x


def _as_grasps(centers, rotations, widths):
    c = np.asarray(centers, dtype=np.float64)
    R = np.asarray(rotations, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"centers must be [N, 3], got shape {c.shape}")
    if R.shape != (c.shape[0], 3, 3):
        raise ValueError(f"rotations must be [N, 3, 3] with N = {c.shape[0]}, got shape {R.shape}")
    w = np.broadcast_to(np.asarray(widths, dtype=np.float64), (c.shape[0],)).copy() if np.ndim(widths) == 0 \
        else np.asarray(widths, dtype=np.float64)
    if w.shape != (c.shape[0],):
        raise ValueError(f"widths must be a number or [N] with N = {c.shape[0]}, got shape {w.shape}")
    if not (np.isfinite(c).all() and np.isfinite(R).all() and np.isfinite(w).all()):
        raise ValueError("centers, rotations and widths must be finite")
    if (w <= 0).any():
        raise ValueError("widths must be > 0")
    return c, R, w


def _first_hits(mesh, origins, dirs, max_dist):
    """First hit of each ray within [0, max_dist]: (hit [N] bool, t [N], point [N, 3], outward normal [N, 3])."""
    n = len(origins)
    hit, t = np.zeros(n, bool), np.full(n, np.inf)
    pts, nrm = np.zeros((n, 3)), np.zeros((n, 3))
    if n == 0:
        return hit, t, pts, nrm
    loc, ray, tri = mesh.ray.intersects_location(origins, dirs, multiple_hits=True)
    if len(ray):
        tt = ((loc - origins[ray]) * dirs[ray]).sum(1)
        keep = (tt >= 0) & (tt <= max_dist[ray])
        loc, ray, tri, tt = loc[keep], ray[keep], tri[keep], tt[keep]
    if len(ray):
        order = np.lexsort((tt, ray))  # per ray, nearest first
        ray, tt, loc, tri = ray[order], tt[order], loc[order], tri[order]
        first = np.r_[True, ray[1:] != ray[:-1]]
        r = ray[first]
        hit[r], t[r], pts[r], nrm[r] = True, tt[first], loc[first], mesh.face_normals[tri[first]]
    return hit, t, pts, nrm


def close_jaws(mesh, centers, rotations, widths):
    """Closes the jaws of N grasps on ``mesh``.

    Returns a dict of arrays: ``contact`` [N] bool (both jaws touch the mesh
    within the stroke), ``p1``, ``p2`` [N, 3] contact points of the jaw
    starting at c - w/2 y and of the one at c + w/2 y, ``n1``, ``n2`` [N, 3]
    outward face normals there, ``width`` [N] the distance between them.
    """
    c, R, w = _as_grasps(centers, rotations, widths)
    y = R[:, :, 1]
    o1, o2 = c - 0.5 * w[:, None] * y, c + 0.5 * w[:, None] * y
    h, t, p, nrm = _first_hits(mesh, np.concatenate([o1, o2]), np.concatenate([y, -y]), np.concatenate([w, w]))
    n = len(c)
    contact = h[:n] & h[n:] & (t[:n] + t[n:] <= w + 1e-9)
    return {"contact": contact, "p1": p[:n], "p2": p[n:], "n1": nrm[:n], "n2": nrm[n:],
            "width": np.where(contact, np.linalg.norm(p[n:] - p[:n], axis=1), np.nan)}


def required_friction(contacts, rotations):
    """The smallest friction coefficient mu at which each grasp is antipodal:
    tan of the larger angle between an inward contact normal and the contact
    line; inf without contacts or when an angle is >= 90 degrees."""
    R = np.asarray(rotations, dtype=np.float64)
    d = contacts["p2"] - contacts["p1"]
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    # coincident contacts (zero thickness): the closing axis is the line
    u = np.where(norm > 1e-12, d / np.maximum(norm, 1e-300), R[:, :, 1])
    cos1 = (-contacts["n1"] * u).sum(1)
    cos2 = (contacts["n2"] * u).sum(1)
    cos = np.minimum(cos1, cos2)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.sqrt(np.maximum(0.0, 1.0 - cos ** 2)) / cos
    return np.where(contacts["contact"] & (cos > 0), mu, np.inf)


def antipodal(mesh, centers, rotations, widths, mu):
    """[N] bool: both jaws touch and both contact normals lie within atan(mu)
    of the contact line (Nguyen's two-finger force closure)."""
    if not np.isfinite(mu) or mu < 0:
        raise ValueError(f"mu must be a finite number >= 0, got {mu!r}")
    return required_friction(close_jaws(mesh, centers, rotations, widths), rotations) <= mu


def _finger_boxes(centers, rotations, widths, gripper):
    """World corners of both open fingers, [N, 16, 3]."""
    c, R, w = _as_grasps(centers, rotations, widths)
    g = gripper
    corners = [(x, side, dy, z) for side in (-1.0, 1.0) for x in (g.tip_depth - g.finger_length, g.tip_depth)
               for dy in (0.0, g.finger_width) for z in (-0.5 * g.finger_height, 0.5 * g.finger_height)]
    x, side, dy, z = (np.array(v)[None] for v in zip(*corners))   # each [1, 16]
    local = np.stack(np.broadcast_arrays(x, side * (0.5 * w[:, None] + dy), z), -1)  # [N, 16, 3]
    return c[:, None] + np.einsum("nij,nkj->nki", R, local)


def table_collision(centers, rotations, widths, gripper=ParallelJawGripper(), table_point=(0, 0, 0),
                    table_normal=(0, 0, 1), clearance=0.0):
    """[N] bool: a finger (a box, so its corners decide) reaches below the table
    plane (through ``table_point`` with upward ``table_normal``) + clearance."""
    nrm = np.asarray(table_normal, dtype=np.float64)
    if nrm.shape != (3,) or not np.linalg.norm(nrm) > 0:
        raise ValueError(f"table_normal must be a non-zero 3-vector, got {table_normal!r}")
    nrm = nrm / np.linalg.norm(nrm)
    corners = _finger_boxes(centers, rotations, widths, gripper)
    height = ((corners - np.asarray(table_point, dtype=np.float64)) * nrm).sum(-1)
    return (height < clearance).any(1)


def approach_collision(mesh, centers, rotations, widths, gripper=ParallelJawGripper(), reach=1.0):
    """[N] bool: an open finger sweeps through the object while the gripper
    moves in along its approach axis to the grasp pose. Tested by rays along
    +x through each finger's cross-section (a 5 x 5 grid incl. its edges: an
    object poking less than a grid step, 2.5 mm x 5 mm at the defaults,
    between rays is missed), from ``reach`` metres behind the fingertip to it."""
    c, R, w = _as_grasps(centers, rotations, widths)
    g = gripper
    x_ax, y_ax, z_ax = R[:, :, 0], R[:, :, 1], R[:, :, 2]
    offsets = [(side, dy, dz) for side in (-1.0, 1.0) for dy in np.linspace(0, g.finger_width, 5)
               for dz in np.linspace(-0.5 * g.finger_height, 0.5 * g.finger_height, 5)]
    origins, dirs = [], []
    tip = c + g.tip_depth * x_ax
    for side, dy, dz in offsets:
        lateral = side * (0.5 * w[:, None] + dy) * y_ax + dz * z_ax
        origins.append(tip + lateral - reach * x_ax)
        dirs.append(x_ax)
    n, k = len(c), len(offsets)
    hit, *_ = _first_hits(mesh, np.concatenate(origins), np.concatenate(dirs), np.full(n * k, reach))
    return hit.reshape(k, n).any(0)


def grasp_success(mesh, centers, rotations, widths=None, mu=0.5, gripper=ParallelJawGripper(),
                  table_point=(0, 0, 0), table_normal=(0, 0, 1)):
    """[N] bool: antipodal at ``mu``, no finger through the object on the way
    in, no finger below the table (``table_point=None``: no table)."""
    c = np.asarray(centers, dtype=np.float64)
    w = gripper.max_width if widths is None else widths
    ok = antipodal(mesh, c, rotations, w, mu)
    ok &= ~approach_collision(mesh, c, rotations, w, gripper)
    if table_point is not None:
        ok &= ~table_collision(c, rotations, w, gripper, table_point, table_normal)
    return ok
