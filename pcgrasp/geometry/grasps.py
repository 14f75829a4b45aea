"""Grasp arrays and their checks.

graspnetAPI's 17-column GraspGroup layout, one row per grasp (camera frame in a dump):
``[score, width, height, depth, R (9, row-major), t (3), object_id]``; R's columns are the
approach x, the closing axis y and the height z (``views.viewpoint_params_to_matrix``), t
the grasp point; the fingertips reach t + depth x.
"""
import numpy as np

GRASP_ARRAY_COLUMNS = 17


def rotations_of(grasps):
    """[N, 3, 3] rotations of an [N, 17] grasp array."""
    return np.asarray(grasps)[:, 4:13].reshape(-1, 3, 3)


def translations_of(grasps):
    """[N, 3] translations of an [N, 17] grasp array."""
    return np.asarray(grasps)[:, 13:16]


def grasp_array(scores, widths, heights, depths, rotations, translations, object_ids=-1):
    """[N, 17] float64 in graspnetAPI's GraspGroup layout."""
    R = np.asarray(rotations, dtype=np.float64)
    t = np.asarray(translations, dtype=np.float64)
    if R.ndim != 3 or R.shape[1:] != (3, 3) or t.shape != (len(R), 3):
        raise ValueError(f"rotations must be [N, 3, 3] and translations [N, 3], got {R.shape} and {t.shape}")
    n = len(R)
    cols = [np.broadcast_to(np.asarray(v, dtype=np.float64), (n,))[:, None]
            for v in (scores, widths, heights, depths)]
    return np.concatenate(cols + [R.reshape(n, 9), t, np.broadcast_to(np.asarray(object_ids, np.float64),
                                                                       (n,))[:, None]], 1)


def check_grasp_array(grasps, name="grasps"):
    g = np.asarray(grasps, dtype=np.float64)
    if g.ndim != 2 or g.shape[1] != 17:
        raise ValueError(f"{name} must be an [N, 17] GraspGroup array (score, width, height, depth, R(9), t(3), "
                         f"object_id), got shape {g.shape}")
    if not np.isfinite(g).all():
        raise ValueError(f"{name} must be finite")
    return g


def as_grasps(centers, rotations, widths):
    """Validated float64 (centers [N, 3], rotations [N, 3, 3], widths [N] > 0); widths may be a number."""
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
