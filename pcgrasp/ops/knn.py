"""k nearest neighbours and PointNet++'s three_nn."""
import torch

from . import _checks as C
from ._grad import dist2_backward

__all__ = ["knn", "three_nn"]


def knn(query, points, k, query_lengths=None, lengths=None, sorted=True):
    """k nearest neighbours by squared Euclidean distance.

    Args:
        query: [B, M, D] float, 1 <= D <= 8.
        points: [B, N, D], same dtype and device as query.
        k: int >= 0. Any size: small k uses a register/insertion path, large k
            a full sort; nothing is capped.
        query_lengths: optional [B] int64, valid queries per cloud (default M).
        lengths: optional [B] int64, valid points per cloud (default N).
        sorted: accepted for API compatibility; results are always sorted.

    Returns:
        dist2: [B, M, k] squared distances in the query dtype, ascending.
        idx: [B, M, k] int64 indices into points[b].
        Ties go to the lower index. Slots beyond lengths[b] neighbours, and
        every slot of padding queries, hold idx -1 and dist2 +inf.

    dist2 is differentiable w.r.t. query and points (padding slots get no
    gradient). The CPU kernel uses a uniform grid for D = 3.
    """
    C.cloud(query, "query")
    C.cloud(points, "points")
    _pair_checks(query, points)
    k = C.count(k, "k")
    B, M, _ = query.shape
    N = points.shape[1]
    query_lengths = C.lengths(query_lengths, "query_lengths", B, M, query)
    lengths = C.lengths(lengths, "lengths", B, N, points)
    return torch.ops.pcgrasp.knn(query, points, query_lengths, lengths, k)


def three_nn(query, points, query_lengths=None, lengths=None):
    """The three nearest neighbours, for PointNet++ feature propagation.

    Same as ``knn(query, points, 3, ...)``: returns (dist2 [B, M, 3],
    idx [B, M, 3]); clouds with fewer than 3 valid points pad with -1 / +inf.
    Use ``inverse_distance_weights(dist2)`` for the interpolation weights.
    """
    return knn(query, points, 3, query_lengths=query_lengths, lengths=lengths)


def _pair_checks(query, points):
    C.same_device(query, points, "query", "points")
    if query.shape[0] != points.shape[0]:
        raise ValueError(f"query and points must have the same batch size, got {query.shape[0]} and {points.shape[0]}")
    if query.shape[2] != points.shape[2]:
        raise ValueError(f"query and points must have the same D, got {query.shape[2]} and {points.shape[2]}")
    if query.dtype != points.dtype:
        raise TypeError(f"query and points must have the same dtype, got {query.dtype} and {points.dtype}")


@torch.library.register_fake("pcgrasp::knn")
def _(query, points, query_lengths, lengths, k):
    B, M, _ = query.shape
    return query.new_empty((B, M, k)), query.new_empty((B, M, k), dtype=torch.int64)


def _setup(ctx, inputs, output):
    query, points = inputs[0], inputs[1]
    ctx.save_for_backward(query, points, output[1])


def _backward(ctx, grad_dist, grad_idx):
    query, points, idx = ctx.saved_tensors
    if grad_dist is None:
        return None, None, None, None, None
    gq, gp = dist2_backward(grad_dist, query, points, idx)
    return gq, gp, None, None, None


torch.library.register_autograd("pcgrasp::knn", _backward, setup_context=_setup)
