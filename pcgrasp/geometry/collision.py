"""Gripper-vs-point-cloud collision checks, vectorised in torch (CPU or GPU).

Two geometries, both in the grasp frame q = R^T (p - t) (x approach, y
closing, z height; t the grasp translation):

- ``model_free_collision``: GSNet's ``ModelFreeCollisionDetector``. Inside
  |q_z| < h/2: the fingers d - L < q_x < d with w/2 < |q_y| < w/2 + f; the
  bottom d - L - f < q_x <= d - L and |q_y| < w/2 + f; the approach (shifting)
  region d - L - f - a < q_x <= d - L - f, same y span (L = finger_length,
  f = finger_width, a = max(approach_dist, f)). Collision when the points
  found, divided by the volume of those regions in voxels of ``voxel_size``,
  exceed ``collision_thresh`` (GSNet's "iou"; 0 means any point).
- ``finger_collision``: graspnetAPI's evaluation (``collision_detection``):
  the fingers span -depth_base < q_x < d, the bottom -depth_base - f < q_x <
  -depth_base; any point there collides; a grasp with fewer than
  ``empty_thresh`` points between the fingers (|q_y| <= w/2, same x and z
  span) is empty.

Both cost O(grasps x points): pass the points near the grasps (see
``near_points``); grasps are processed in chunks of ``chunk`` elements.
"""
import numpy as np
import torch

from .gripper import GRIPPER, ParallelJawGripper
from .grasps import as_grasps
from .rays import first_hits


def _tensor(x, name, shape_tail, dtype, device):
    t = torch.as_tensor(np.array(x) if not torch.is_tensor(x) else x, dtype=dtype, device=device)
    if t.shape[1:] != shape_tail or t.ndim != 1 + len(shape_tail):
        raise ValueError(f"{name} must be [N, {', '.join(map(str, shape_tail))}], got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite")
    return t


def _grasps(points, centers, rotations, widths, depths, dtype, device):
    P = _tensor(points, "points", (3,), dtype, device)
    c = _tensor(centers, "centers", (3,), dtype, device)
    R = _tensor(rotations, "rotations", (3, 3), dtype, device)
    n = c.shape[0]
    if R.shape[0] != n:
        raise ValueError(f"rotations must be [N, 3, 3] with N = {n}, got shape {tuple(R.shape)}")
    out = [P, c, R]
    for name, v in (("widths", widths), ("depths", depths)):
        t = torch.as_tensor(np.array(v) if not torch.is_tensor(v) else v, dtype=dtype, device=device)
        t = t.expand(n).contiguous() if t.ndim == 0 else t
        if t.shape != (n,):
            raise ValueError(f"{name} must be a number or [N] with N = {n}, got shape {tuple(t.shape)}")
        if not torch.isfinite(t).all() or (name == "widths" and (t < 0).any()):
            raise ValueError(f"{name} must be finite" + (" and >= 0" if name == "widths" else ""))
        out.append(t)
    return out


def _np_grasps(points, centers, rotations, widths, depths):
    """``_grasps``' checks and messages, in NumPy float64."""
    out = []
    for name, x, tail in (("points", points, (3,)), ("centers", centers, (3,)), ("rotations", rotations, (3, 3))):
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 1 + len(tail) or a.shape[1:] != tail:
            raise ValueError(f"{name} must be [N, {', '.join(map(str, tail))}], got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite")
        out.append(a)
    n = len(out[1])
    if len(out[2]) != n:
        raise ValueError(f"rotations must be [N, 3, 3] with N = {n}, got shape {out[2].shape}")
    for name, v in (("widths", widths), ("depths", depths)):
        a = np.asarray(v, dtype=np.float64)
        a = np.full(n, float(a)) if a.ndim == 0 else a
        if a.shape != (n,):
            raise ValueError(f"{name} must be a number or [N] with N = {n}, got shape {a.shape}")
        if not np.isfinite(a).all() or (name == "widths" and (a < 0).any()):
            raise ValueError(f"{name} must be finite" + (" and >= 0" if name == "widths" else ""))
        out.append(a)
    return out


def _finger_collision_numpy(P, c, R, w, d, h, f, b, empty_thresh):
    n = len(c)
    if n == 0 or len(P) == 0:
        return np.zeros(n, bool), np.full(n, 0 < empty_thresh)
    # grasp-frame coordinates q = R^T (p - c) of every (grasp, point) pair as matrix products
    # R^T (P - c0)^T - R^T (c - c0) ([n, M] per axis; c0: the first centre, for precision); the
    # tests below only on the pairs inside the gripper's slab |z| < h/2 (a fraction of them)
    c0 = c[0]
    Xt = np.ascontiguousarray((P - c0).T)
    shift = np.einsum("nk,nkj->nj", c - c0, R)
    M = Xt.shape[1]
    z = R[:, :, 2] @ Xt
    z -= shift[:, 2:3]
    idx = np.flatnonzero(np.abs(z) < h / 2)
    k = idx // M
    x = (R[:, :, 0] @ Xt).ravel()[idx] - shift[k, 0]
    ya = np.abs((R[:, :, 1] @ Xt).ravel()[idx] - shift[k, 1])
    hw = 0.5 * w[k]
    span = ya < hw + f
    along = (x > -b) & (x < d[k])
    bottom = (x < -b) & (x > -b - f)
    hit = span & ((along & (ya > hw)) | bottom)
    inner = span & along & (ya <= hw)
    coll = np.bincount(k[hit], minlength=n) > 0
    return coll, np.bincount(k[inner], minlength=n) < empty_thresh


def _local_chunks(P, c, R, chunk):
    """(start, end, x, y, z), each [M, n], the grasp-frame coordinates q =
    R^T (p - c) of every point for grasps start:end, as matrix products:
    (p - c0) R - (c - c0) R with c0 the chunk's first centre (exact when the
    grasps share a centre, as a label point's)."""
    n, M = c.shape[0], P.shape[0]
    step = max(1, chunk // max(M, 1))
    for s in range(0, n, step):
        e = min(n, s + step)
        Rc, c0 = R[s:e], c[s]
        X = P - c0
        shift = torch.einsum("nk,nkj->nj", c[s:e] - c0, Rc)
        yield (s, e) + tuple(X @ Rc[:, :, j].T - shift[:, j] for j in range(3))


def model_free_collision(points, centers, rotations, widths, depths, heights=GRIPPER.height,
                         finger_width=GRIPPER.finger_width, finger_length=GRIPPER.finger_length, approach_dist=0.05,
                         voxel_size=0.005, collision_thresh=0.0, dtype=torch.float64, device=None, chunk=1 << 22):
    """[N] bool numpy: GSNet's model-free collision of N grasps with a cloud
    ``points`` [M, 3] (centers [N, 3], rotations [N, 3, 3], widths and depths
    numbers or [N]; heights a number). See the module docstring."""
    P, c, R, w, d = _grasps(points, centers, rotations, widths, depths, dtype, device)
    if not voxel_size > 0 or not collision_thresh >= 0:
        raise ValueError(f"voxel_size must be > 0 and collision_thresh >= 0, got {voxel_size!r}, {collision_thresh!r}")
    h, f, L = float(heights), float(finger_width), float(finger_length)
    a = max(float(approach_dist), f)
    out = torch.zeros(c.shape[0], dtype=torch.bool)
    if c.shape[0] == 0 or P.shape[0] == 0:
        return out.numpy()
    for s, e, x, y, z in _local_chunks(P, c, R, chunk):
        dd, hw = d[s:e], 0.5 * w[s:e]
        ya = y.abs()
        # fingers: d - L < x < d, |y| > w/2; bottom + shifting: d - L - f - a < x <= d - L (|y| < w/2 + f, |z| < h/2)
        hit = (z.abs() < h / 2) & (ya < hw + f) & (x > dd - L - f - a) & (x < dd) & ((ya > hw) | (x <= dd - L))
        count = hit.sum(0).to(dtype)
        if collision_thresh == 0:
            out[s:e] = (count > 0).cpu()
        else:
            ww = w[s:e]
            volume = (2 * h * L * f + h * (ww + 2 * f) * f + h * (ww + 2 * f) * a) / voxel_size ** 3
            out[s:e] = (count / (volume + 1e-6) > collision_thresh).cpu()
    return out.numpy()


def finger_collision(points, centers, rotations, widths, depths, height=GRIPPER.height,
                     finger_width=GRIPPER.finger_width, depth_base=GRIPPER.depth_base, empty_thresh=10,
                     dtype=torch.float64, device=None, chunk=1 << 22):
    """graspnetAPI's evaluation check of N grasps against a cloud [M, 3]:
    (collision [N] bool, empty [N] bool) numpy. See the module docstring.

    Small CPU problems (NumPy inputs, no ``device``, float64, N x M below
    ``chunk``: an evaluated frame's few grasps per object against its crop) run
    in NumPy, which has less overhead per call than torch; the rest in torch."""
    args = (points, centers, rotations, widths, depths)
    if (device is None and dtype == torch.float64 and not any(torch.is_tensor(a) for a in args)):
        P, c, R, w, d = _np_grasps(*args)
        if len(c) * len(P) <= chunk:
            return _finger_collision_numpy(P, c, R, w, d, float(height), float(finger_width), float(depth_base),
                                           empty_thresh)
    P, c, R, w, d = _grasps(points, centers, rotations, widths, depths, dtype, device)
    n = c.shape[0]
    coll, inner_count = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.int64)
    if n and P.shape[0]:
        h, f, b = float(height), float(finger_width), float(depth_base)
        for s, e, x, y, z in _local_chunks(P, c, R, chunk):
            dd, hw = d[s:e], 0.5 * w[s:e]
            ya = y.abs()
            span = (z.abs() < h / 2) & (ya < hw + f)
            along = (x > -b) & (x < dd)
            bottom = (x < -b) & (x > -b - f)
            coll[s:e] = (span & ((along & (ya > hw)) | bottom)).any(0).cpu()
            inner_count[s:e] = (span & along & (ya <= hw)).sum(0).cpu()
    return coll.numpy(), (inner_count < empty_thresh).numpy()


def shared_center_finger_collision(points, center, rotations, widths, depths, height=GRIPPER.height,
                                   finger_width=GRIPPER.finger_width, depth_base=GRIPPER.depth_base,
                                   dtype=torch.float64, device=None, chunk=1 << 22):
    """``finger_collision``'s collision test (no empty test) for the K x D grasps
    that share one translation ``center`` [3] (a label point's): rotations [K, 3,
    3], depths [D], widths [K, D]. Returns [K, D] bool numpy.

    Only the points inside some grasp's slab |q_z| < h/2 and depth range
    -depth_base - f < q_x < max(depths) are looked at per rotation (a few
    percent of an object's points), so a label point's 14,400 grasps cost a few
    matrix products instead of a full points x grasps mask."""
    P = _tensor(points, "points", (3,), dtype, device)
    c = _tensor(np.asarray(center).reshape(1, 3) if not torch.is_tensor(center) else center.reshape(1, 3),
                "center", (3,), dtype, device)[0]
    R = _tensor(rotations, "rotations", (3, 3), dtype, device)
    d = torch.as_tensor(np.asarray(depths) if not torch.is_tensor(depths) else depths, dtype=dtype,
                        device=device).reshape(-1)
    w = torch.as_tensor(np.asarray(widths) if not torch.is_tensor(widths) else widths, dtype=dtype, device=device)
    K, D = R.shape[0], d.shape[0]
    if w.shape != (K, D):
        raise ValueError(f"widths must be [K, D] = [{K}, {D}] (one per rotation and depth), got {tuple(w.shape)}")
    if not (torch.isfinite(d).all() and torch.isfinite(w).all()) or (w < 0).any():
        raise ValueError("depths and widths must be finite and widths >= 0")
    out = torch.zeros((K, D), dtype=torch.int64, device=P.device)
    if K == 0 or D == 0 or P.shape[0] == 0:
        return out.bool().cpu().numpy()
    h, f, b = float(height), float(finger_width), float(depth_base)
    X = P - c
    step = max(1, chunk // P.shape[0])
    for s in range(0, K, step):
        e = min(K, s + step)
        qx = X @ R[s:e, :, 0].T                                      # [M, k]
        qz = X @ R[s:e, :, 2].T
        m, k = torch.nonzero((qz.abs() < h / 2) & (qx > -b - f) & (qx < d.max()), as_tuple=True)
        if m.numel() == 0:
            continue
        x = qx[m, k][:, None]
        ya = (X[m] * R[s + k, :, 1]).sum(1).abs()[:, None]
        hw = 0.5 * w[s + k]                                         # [L, D]
        hit = (ya < hw + f) & (((x > -b) & (x < d[None]) & (ya > hw)) | ((x < -b) & (x > -b - f)))
        out.index_add_(0, s + k, hit.to(torch.int64))
    return (out > 0).cpu().numpy()


def near_points(points, center, radius):
    """Indices of ``points`` [M, 3] within ``radius`` of ``center`` [3]."""
    P = np.asarray(points, dtype=np.float64)
    return np.flatnonzero(((P - np.asarray(center, dtype=np.float64)) ** 2).sum(1) <= radius ** 2)


def gripper_reach(depth_max, max_width=GRIPPER.max_width, gripper=GRIPPER, approach_dist=0.05, depth_min=0.0):
    """A radius around a grasp translation that holds every region of both
    checks for depths in [depth_min, depth_max] (for ``near_points``)."""
    back = max(gripper.finger_length + gripper.finger_width + max(approach_dist, gripper.finger_width),
               gripper.depth_base + gripper.finger_width)
    x = max(abs(depth_max), back - min(depth_min, 0.0), abs(depth_min))  # regions span x in (d - back, d)
    y = max_width / 2 + gripper.finger_width
    return float(np.sqrt(x ** 2 + y ** 2 + (gripper.height / 2) ** 2)) + 1e-6


# --------------------------------------------------------------------------- mesh checks (Dex-Net planar grasps)

def _finger_boxes(centers, rotations, widths, gripper):
    """World corners of both open fingers, [N, 16, 3]."""
    c, R, w = as_grasps(centers, rotations, widths)
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
    c, R, w = as_grasps(centers, rotations, widths)
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
    hit, *_ = first_hits(mesh, np.concatenate(origins), np.concatenate(dirs), np.full(n * k, reach))
    return hit.reshape(k, n).any(0)
