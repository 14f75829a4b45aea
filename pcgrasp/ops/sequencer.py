"""Point-JEPA's patch sequencer."""
import torch

from . import _checks as C

__all__ = ["nearest_neighbor_order"]


def nearest_neighbor_order(centers, start="min_sum", lengths=None):
    """Greedy nearest-neighbour ordering of patch centres (Point-JEPA).

    Args:
        centers: [B, G, 3] float; lengths: optional [B] int64 valid counts.
        start: ``"min_sum"``: begin at the centre with the smallest x + y + z.

    Returns:
        order: [B, G] int64, a permutation of each cloud's valid centres: the
        start, then repeatedly the nearest unvisited centre. Ties go to the
        lower index. Padding rows end in -1. One kernel call, no Python loop.
    """
    C.cloud(centers, "centers", max_d=3)
    if centers.shape[2] != 3:
        raise ValueError(f"centers must have shape [B, G, 3], got shape {tuple(centers.shape)}")
    if start != "min_sum":
        raise ValueError(f"start must be 'min_sum', got {start!r}")
    B, G, _ = centers.shape
    lengths = C.lengths(lengths, "lengths", B, G, centers)
    return torch.ops.pcgrasp.nearest_neighbor_order(centers, lengths)


@torch.library.register_fake("pcgrasp::nearest_neighbor_order")
def _(centers, lengths):
    return centers.new_empty(centers.shape[:2], dtype=torch.int64)
