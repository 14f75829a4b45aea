"""Farthest point sampling."""
import torch

from . import _checks as C

__all__ = ["farthest_point_sample"]


def farthest_point_sample(points, k, lengths=None, start="first", generator=None):
    """Farthest point sampling, the same on CPU and CUDA.

    Args:
        points: [B, N, D] float16/bfloat16/float32/float64, 1 <= D <= 8 (half
            types are computed in float32). Must be finite.
        k: int, samples per cloud; or an integer tensor [B] of per-cloud
            counts (then K = k.max(), which costs a device sync).
        lengths: optional [B] int64, valid points per cloud (a prefix of each
            row); default N for every cloud.
        start: ``"first"`` (index 0), ``"random"`` (uniform over each cloud's
            valid points, drawn from ``generator``), or an int64 tensor [B] of
            start indices in [0, lengths[b]).
        generator: torch.Generator used by ``start="random"`` (a CPU generator
            works for any device).

    Returns:
        idx: [B, K] int64. Row b holds min(k_b, lengths[b]) distinct indices in
        selection order, then -1.

    Classic FPS: the next point is the unselected one whose squared distance
    to the selected set is largest; no point is skipped (not even those near
    the origin); ties go to the lowest index; once only points at distance 0
    (duplicates) remain they are taken in index order. Distances are summed
    with explicitly rounded operations, so CPU and CUDA return identical
    indices for the same float32/float64 input.
    """
    C.cloud(points, "points")
    B, N, _ = points.shape
    lengths = C.lengths(lengths, "lengths", B, N, points)
    if isinstance(k, torch.Tensor) and k.dim() == 1:
        C.tensor(k, "k")
        if k.shape[0] != B:
            raise ValueError(f"k must be an int or have shape [{B}], got shape {tuple(k.shape)}")
        if k.is_floating_point() or k.dtype == torch.bool:
            raise TypeError(f"k must be an integer tensor, got {k.dtype}")
        counts = k.to(device=points.device, dtype=torch.int64)
        if B and bool((counts < 0).any()):
            raise ValueError(f"k must be >= 0, got {counts.min().item()}")
        K = int(counts.max()) if B else 0
    else:
        K = C.count(k, "k")
        counts = torch.full((B,), K, dtype=torch.int64, device=points.device)
    starts = _start_indices(start, generator, lengths, B, points)
    return torch.ops.pcgrasp.farthest_point_sample(points, lengths, counts, starts, K)


def _start_indices(start, generator, lengths, B, points):
    if isinstance(start, str):
        if start == "first":
            return None  # the kernels start at index 0
        if start == "random":
            gdev = generator.device if generator is not None else torch.device("cpu")
            u = torch.rand(B, generator=generator, device=gdev, dtype=torch.float64)
            n = lengths.to(gdev)
            s = torch.minimum((u * n).floor().to(torch.int64), (n - 1).clamp(min=0))
            return s.to(points.device)
        raise ValueError(f"start must be 'first', 'random' or an int64 tensor [B], got {start!r}")
    C.tensor(start, "start")
    if start.dim() != 1 or start.shape[0] != B:
        raise ValueError(f"start must have shape [{B}], got shape {tuple(start.shape)}")
    if start.is_floating_point() or start.dtype == torch.bool:
        raise TypeError(f"start must be an integer tensor, got {start.dtype}")
    C.same_device(start, points, "start", "points")
    start = start.to(torch.int64)
    if C.data_checks_enabled(start) and B:
        bad = ((start < 0) | (start >= lengths)) & (lengths > 0)
        if bool(bad.any()):
            b = int(bad.nonzero()[0, 0])
            raise ValueError(f"start[{b}]={int(start[b])} is outside cloud {b}'s {int(lengths[b])} valid points")
    return start


@torch.library.register_fake("pcgrasp::farthest_point_sample")
def _(points, lengths, counts, start, K):
    return points.new_empty((points.shape[0], K), dtype=torch.int64)
