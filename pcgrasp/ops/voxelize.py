"""Voxelization with an inverse map (MinkowskiEngine sparse_quantize semantics)."""
import torch

from . import _checks as C

__all__ = ["voxelize"]


def voxelize(points, voxel_size, lengths=None):
    """Quantise a ragged batch of clouds into voxels.

    Args:
        points: [B, N, 3] float; lengths: optional [B] int64 valid counts.
        voxel_size: float > 0.

    Returns:
        coords: [V, 4] int32 rows (batch, x, y, z) with x = floor(p_x /
            voxel_size) (as MinkowskiEngine's ``sparse_quantize``), unique,
            sorted lexicographically; ready for a MinkowskiEngine
            ``SparseTensor(features, coordinates=coords)``.
        inverse: [B * N] int64, the coords row of each input point (flattened
            b * N + i), -1 for padding: ``feats_per_voxel[inverse]`` maps back.
        first: [V] int64, flat index b * N + i of one representative point per
            voxel (the lowest), e.g. ``points.reshape(-1, 3)[first]``.
    """
    C.cloud(points, "points", max_d=3)
    if points.shape[2] != 3:
        raise ValueError(f"points must have shape [B, N, 3], got shape {tuple(points.shape)}")
    voxel_size = C.positive(voxel_size, "voxel_size")
    B, N, _ = points.shape
    lengths = C.lengths(lengths, "lengths", B, N, points)
    return torch.ops.pcgrasp.voxelize(points, voxel_size, lengths)


@torch.library.register_fake("pcgrasp::voxelize")
def _(points, voxel_size, lengths):
    V = torch.library.get_ctx().new_dynamic_size()
    B, N, _ = points.shape
    return (points.new_empty((V, 4), dtype=torch.int32), points.new_empty((B * N,), dtype=torch.int64),
            points.new_empty((V,), dtype=torch.int64))
