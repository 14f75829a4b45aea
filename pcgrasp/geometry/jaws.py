"""Closing a parallel-jaw gripper on a mesh and the antipodal (Nguyen) force-closure test,
with graspnetAPI's / dex-net's semantics (the rule GraspNet-1Billion's labels and AP use).

Gripper frame as graspnetAPI: for each grasp a centre c [3] and a rotation R
[3, 3] whose columns are x = approach (from the palm towards the object),
y = closing axis (the jaws move along it), z = height (x cross y). A planar
top-down grasp (Dex-Net) is the special case x = camera viewing direction.

Jaws (``close_jaws``): opened to w, the jaws sit at c - w/2 y and c + w/2 y
and each moves towards the centre line only, a stroke of w/2 (dex-net's
``close_fingers`` with a closed width of 0); each jaw is a line (no
thickness) cast as a ray (trimesh, Embree when installed, in bounded chunks:
``rays.first_hits``), and its first surface crossing within the stroke is its
contact (an entry, or an exit when the jaw starts inside the object, as
dex-net's search along the line finds either). Both contacts must exist.

Force closure (``required_friction``): the angle between each contact's
normal line and the line through both contacts at most atan(mu), at both
contacts; the normal's sign is ignored (dex-net's ``force_closure`` with
``use_abs_value=True``); coincident contacts fail. Normals are the mesh's
face normals (dex-net fits a plane to SDF surface voxels instead: see
``eval.grasp_ap`` for what that changes).

``jaw_contacts``: a GraspNet grasp (translation t, rotation R, depth d,
width w) closes on its fingertip line, centre t + d x (graspnetAPI's
evaluation and labels).
"""
import numpy as np

from .collision import approach_collision, table_collision
from .grasps import as_grasps
from .gripper import GRIPPER, ParallelJawGripper
from .rays import first_hits


def close_jaws(mesh, centers, rotations, widths):
    """Closes the jaws of N grasps on ``mesh`` (see the module docstring).

    Returns a dict of arrays: ``contact`` [N] bool (each jaw meets the surface
    within its stroke of w/2), ``p1``, ``p2`` [N, 3] contact points of the jaw
    starting at c - w/2 y and of the one at c + w/2 y, ``n1``, ``n2`` [N, 3]
    outward face normals there, ``width`` [N] the distance between them.
    """
    c, R, w = as_grasps(centers, rotations, widths)
    y = R[:, :, 1]
    o1, o2 = c - 0.5 * w[:, None] * y, c + 0.5 * w[:, None] * y
    half = 0.5 * w
    h, t, p, nrm = first_hits(mesh, np.concatenate([o1, o2]), np.concatenate([y, -y]),
                              np.concatenate([half, half]))
    n = len(c)
    contact = h[:n] & h[n:]
    return {"contact": contact, "p1": p[:n], "p2": p[n:], "n1": nrm[:n], "n2": nrm[n:],
            "width": np.where(contact, np.linalg.norm(p[n:] - p[:n], axis=1), np.nan)}


def required_friction(contacts, rotations=None):
    """The smallest friction coefficient mu at which each grasp is antipodal:
    tan of the larger angle between a contact's (unsigned) normal line and
    the contact line; inf without both contacts, for coincident contacts, or
    when a normal is perpendicular to the contact line. ``rotations`` is
    accepted for backward compatibility and unused."""
    d = contacts["p2"] - contacts["p1"]
    norm = np.linalg.norm(d, axis=1)
    u = d / np.maximum(norm, 1e-300)[:, None]
    cos = np.minimum(np.abs((contacts["n1"] * u).sum(1)), np.abs((contacts["n2"] * u).sum(1)))
    cos = np.minimum(cos, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.sqrt(np.maximum(0.0, 1.0 - cos ** 2)) / cos
    return np.where(contacts["contact"] & (norm > 1e-12) & (cos > 0), mu, np.inf)


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
    """Closes GraspNet grasps on their fingertip line (centre t + d x, jaws from
    +-max_width/2 to that centre, see the module docstring): (required mu [G]
    (inf: no grasp), width [G]). ``max_width``: the opening the jaws close
    from, a number or [G] (the labels pass the gripper's 0.1 m, the evaluator
    each grasp's width). width: the opening a centred gripper needs to reach
    both contacts, 2 max(|s1|, |s2|) + ``width_margin`` (s the contacts'
    offsets along y from the centre), at most ``max_width``; ``max_width``
    where the jaws find no contacts."""
    t = np.asarray(translations, dtype=np.float64)
    R = np.asarray(rotations, dtype=np.float64)
    d = np.broadcast_to(np.asarray(depths, dtype=np.float64), (len(t),))
    max_width = np.broadcast_to(np.asarray(max_width, dtype=np.float64), (len(t),))
    if len(t) == 0:
        return np.zeros(0), np.zeros(0)
    line = t + d[:, None] * R[:, :, 0]
    con = close_jaws(mesh, line, R, max_width)
    mu = required_friction(con)
    y = R[:, :, 1]
    s1, s2 = ((con["p1"] - line) * y).sum(1), ((con["p2"] - line) * y).sum(1)
    need = 2 * np.maximum(np.abs(s1), np.abs(s2))
    width = np.where(con["contact"], np.minimum(need + width_margin, max_width), max_width)
    return mu, width
