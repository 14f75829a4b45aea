"""GSNet CloudCrop cylinder query."""
import torch

from . import _checks as C
from .knn import _pair_checks

__all__ = ["cylinder_query"]


def cylinder_query(query, rotation, points, radius, hmin, hmax, k, query_lengths=None, lengths=None,
                   order="first", pad="none"):
    """Up to k points inside an oriented cylinder per query (GSNet CloudCrop).

    Args:
        query: [B, M, 3] cylinder centres c (e.g. grasp seeds).
        rotation: [B, M, 3, 3] rotations R (approach frame; column 0 is the
            cylinder axis).
        points: [B, N, 3], same dtype and device as query.
        radius: float >= 0.
        hmin: float, the lower end of the cylinder along its axis (hmin <= hmax).
        hmax: float, the upper end.
        k: int >= 0, the most points returned per cylinder.
        query_lengths: optional [B] int64, valid queries per cloud.
        lengths: optional [B] int64, valid points per cloud.
        order: ``"first"``: the first k inside points in index order (the
            graspnet CUDA op); ``"nearest"``: the k with the smallest radial
            distance q_y**2 + q_z**2, ties to the lower index.
        pad: ``"none"`` leaves -1 past ``count``; ``"first"`` repeats the first
            hit (graspnet convention); empty cylinders stay -1.

    A point p is inside when, with q = R^T (p - c): q_y**2 + q_z**2 < radius**2
    and hmin < q_x < hmax.

    Returns:
        idx: [B, M, k] int64; count: [B, M] int64 (distinct hits returned).
    """
    C.cloud(query, "query", max_d=3)
    C.cloud(points, "points", max_d=3)
    _pair_checks(query, points)
    if query.shape[2] != 3:
        raise ValueError(f"query and points must have D = 3, got D={query.shape[2]}")
    C.tensor(rotation, "rotation")
    B, M, _ = query.shape
    if rotation.dim() != 4 or tuple(rotation.shape) != (B, M, 3, 3):
        raise ValueError(f"rotation must have shape [{B}, {M}, 3, 3], got shape {tuple(rotation.shape)}")
    if rotation.dtype not in C.FLOAT_DTYPES:
        raise TypeError(f"rotation must be a floating tensor, got {rotation.dtype}")
    C.same_device(rotation, query, "rotation", "query")
    if C.data_checks_enabled(rotation) and rotation.numel() and not bool(torch.isfinite(rotation).all()):
        raise ValueError("rotation contains non-finite values")
    radius = C.radius(radius)
    hmin, hmax = C.finite(hmin, "hmin"), C.finite(hmax, "hmax")
    if hmin > hmax:
        raise ValueError(f"hmin must not exceed hmax, got hmin={hmin} > hmax={hmax}")
    k = C.count(k, "k")
    if order not in ("first", "nearest"):
        raise ValueError(f"order must be 'first' or 'nearest', got {order!r}")
    if pad not in ("none", "first"):
        raise ValueError(f"pad must be 'none' or 'first', got {pad!r}")
    query_lengths = C.lengths(query_lengths, "query_lengths", B, M, query)
    lengths = C.lengths(lengths, "lengths", B, points.shape[1], points)
    idx, count = torch.ops.pcgrasp.cylinder_query(query, rotation, points, query_lengths, lengths, radius, hmin,
                                                  hmax, k, order == "nearest")
    if pad == "first" and k > 0:
        idx = torch.where((idx < 0) & (count.unsqueeze(-1) > 0), idx[..., :1], idx)
    return idx, count


@torch.library.register_fake("pcgrasp::cylinder_query")
def _(query, rotation, points, query_lengths, lengths, radius, hmin, hmax, k, nearest):
    B, M, _ = query.shape
    return query.new_empty((B, M, k), dtype=torch.int64), query.new_empty((B, M), dtype=torch.int64)
