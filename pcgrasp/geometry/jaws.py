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
import numpy as np

from .collision import approach_collision, table_collision
from .grasps import as_grasps
from .gripper import GRIPPER, ParallelJawGripper
from .rays import first_hits


def close_jaws(mesh, centers, rotations, widths):
    """Closes the jaws of N grasps on ``mesh``.

    Returns a dict of arrays: ``contact`` [N] bool (both jaws touch the mesh
    within the stroke), ``p1``, ``p2`` [N, 3] contact points of the jaw
    starting at c - w/2 y and of the one at c + w/2 y, ``n1``, ``n2`` [N, 3]
    outward face normals there, ``width`` [N] the distance between them.
    """
    c, R, w = as_grasps(centers, rotations, widths)
    y = R[:, :, 1]
    o1, o2 = c - 0.5 * w[:, None] * y, c + 0.5 * w[:, None] * y
    h, t, p, nrm = first_hits(mesh, np.concatenate([o1, o2]), np.concatenate([y, -y]), np.concatenate([w, w]))
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


def jaw_contacts(mesh, translations, rotations, depths, max_width=GRIPPER.max_width, width_margin=0.01):
    """Closes the jaws of grasps as the labels do (see the module docstring):
    (required mu [G] (inf: no grasp), width [G]). ``max_width``: the opening
    the jaws close from, a number or [G] (the evaluator passes each grasp's
    width)."""
    t = np.asarray(translations, dtype=np.float64)
    R = np.asarray(rotations, dtype=np.float64)
    d = np.broadcast_to(np.asarray(depths, dtype=np.float64), (len(t),))
    max_width = np.broadcast_to(np.asarray(max_width, dtype=np.float64), (len(t),))
    if len(t) == 0:
        return np.zeros(0), np.zeros(0)
    line = t + 0.5 * d[:, None] * R[:, :, 0]
    con = close_jaws(mesh, line, R, max_width)
    mu = required_friction(con, R)
    y = R[:, :, 1]
    s1, s2 = ((con["p1"] - line) * y).sum(1), ((con["p2"] - line) * y).sum(1)
    need = 2 * np.maximum(np.abs(s1), np.abs(s2))
    mu = np.where(con["contact"] & (need <= max_width + 1e-9), mu, np.inf)
    width = np.where(con["contact"], np.minimum(need + width_margin, max_width), max_width)
    return mu, width
