"""Ball query (radius neighbours with a cap)."""
import torch

from . import _checks as C
from ._grad import dist2_backward
from .knn import _pair_checks

__all__ = ["ball_query"]


def ball_query(query, points, radius, k, query_lengths=None, lengths=None, order="nearest", pad="none"):
    """Up to k points within ``radius`` of each query.

    Args:
        query: [B, M, D] float, 1 <= D <= 8.
        points: [B, N, D], same dtype and device.
        radius: float >= 0. A point is inside when dist2 < radius**2 (strict;
            radius**2 is rounded to the compute dtype, float32 for half inputs).
        k: int >= 0, the most neighbours returned per query.
        query_lengths: optional [B] int64, valid queries per cloud (default M).
        lengths: optional [B] int64, valid points per cloud (default N).
        order: ``"nearest"``: the k nearest inside points, sorted by
            (dist2, index). ``"first"``: the first k inside points in index
            order (pointnet2's ball_query).
        pad: ``"none"``: slots past ``count`` hold idx -1, dist2 +inf.
            ``"first"``: they repeat the first hit (pointnet2's convention);
            queries with no hit still hold -1 / +inf.

    Returns:
        idx: [B, M, k] int64; dist2: [B, M, k] in the query dtype;
        count: [B, M] int64, the number of distinct hits returned (<= k).

    dist2 is differentiable w.r.t. query and points. The CPU kernel uses a
    uniform grid with cells of edge ``radius`` for D = 3.
    """
    C.cloud(query, "query")
    C.cloud(points, "points")
    _pair_checks(query, points)
    radius = C.radius(radius)
    k = C.count(k, "k")
    if order not in ("nearest", "first"):
        raise ValueError(f"order must be 'nearest' or 'first', got {order!r}")
    if pad not in ("none", "first"):
        raise ValueError(f"pad must be 'none' or 'first', got {pad!r}")
    B, M, _ = query.shape
    N = points.shape[1]
    query_lengths = C.lengths(query_lengths, "query_lengths", B, M, query)
    lengths = C.lengths(lengths, "lengths", B, N, points)
    # the op returns dist2 first (like knn) so autograd tooling sees a float output first
    dist2, idx, count = torch.ops.pcgrasp.ball_query(
        query, points, query_lengths, lengths, radius, k, order == "nearest")
    if pad == "first" and k > 0:
        fill = (idx < 0) & (count.unsqueeze(-1) > 0)
        idx = torch.where(fill, idx[..., :1], idx)
        dist2 = torch.where(fill, dist2[..., :1], dist2)
    return idx, dist2, count


@torch.library.register_fake("pcgrasp::ball_query")
def _(query, points, query_lengths, lengths, radius, k, nearest):
    B, M, _ = query.shape
    return (query.new_empty((B, M, k)), query.new_empty((B, M, k), dtype=torch.int64),
            query.new_empty((B, M), dtype=torch.int64))


def _setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1], output[1])


def _backward(ctx, grad_dist, grad_idx, grad_count):
    query, points, idx = ctx.saved_tensors
    if grad_dist is None:
        return (None,) * 7
    gq, gp = dist2_backward(grad_dist, query, points, idx)
    return gq, gp, None, None, None, None, None


torch.library.register_autograd("pcgrasp::ball_query", _backward, setup_context=_setup)
