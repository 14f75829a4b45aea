"""Cross-view correspondences and radius pairs (GraspContrast / PointContrast)."""
import torch

from . import _checks as C

__all__ = ["correspondences", "radius_pairs"]


def _prepare(src, dst, radius, src_lengths, dst_lengths, src_transform, dst_transform):
    C.cloud(src, "src", max_d=3)
    C.cloud(dst, "dst", max_d=3)
    for x, n in ((src, "src"), (dst, "dst")):
        if x.shape[2] != 3:
            raise ValueError(f"{n} must have shape [B, N, 3], got shape {tuple(x.shape)}")
    C.same_device(src, dst, "src", "dst")
    if src.shape[0] != dst.shape[0]:
        raise ValueError(f"src and dst must have the same batch size, got {src.shape[0]} and {dst.shape[0]}")
    if src.dtype != dst.dtype:
        raise TypeError(f"src and dst must have the same dtype, got {src.dtype} and {dst.dtype}")
    radius = C.radius(radius)
    B = src.shape[0]
    src_lengths = C.lengths(src_lengths, "src_lengths", B, src.shape[1], src)
    dst_lengths = C.lengths(dst_lengths, "dst_lengths", B, dst.shape[1], dst)
    src_transform = C.transform(src_transform, "src_transform", B, src)
    dst_transform = C.transform(dst_transform, "dst_transform", B, dst)
    return radius, src_lengths, dst_lengths, src_transform, dst_transform


def correspondences(src, dst, radius, src_lengths=None, dst_lengths=None, src_transform=None, dst_transform=None):
    """Nearest dst point of every src point within ``radius``, in the world frame.

    Args:
        src: [B, N, 3] points of view A.
        dst: [B, M, 3] points of view B (same float dtype and device as src).
        radius: float >= 0; a match needs world dist2 < radius**2.
        src_lengths: optional [B] int64 valid counts of src.
        dst_lengths: optional [B] int64 valid counts of dst.
        src_transform: optional [B, 4, 4] rigid transforms mapping view A to the
            world frame (world = R p + t), e.g. camera extrinsics composed with
            the inverse augmentation. Applied on the fly: no transformed copy of
            either cloud is made by the caller.
        dst_transform: optional [B, 4, 4], the same for view B.

    Returns:
        idx: [B, N] int64 index into dst[b] of the nearest match (ties: lower
        index), or -1; dist2: [B, N] world squared distance, +inf without match.

    A sorted-cell index of dst (cells of edge ``radius``) makes this linear
    time on both devices; no N x M distance matrix is formed.
    """
    args = _prepare(src, dst, radius, src_lengths, dst_lengths, src_transform, dst_transform)
    radius, sl, dl, ts, td = args
    return torch.ops.pcgrasp.correspondences(src, dst, sl, dl, ts, td, radius)


def radius_pairs(src, dst, radius, src_lengths=None, dst_lengths=None, src_transform=None, dst_transform=None,
                 max_pairs=None):
    """All (src, dst) pairs within ``radius`` in the world frame (PointContrast's
    positive set).

    Arguments as in :func:`correspondences`, plus ``max_pairs``: None for all
    pairs, or an int >= 1 keeping per source point the ``max_pairs`` nearest
    dst points (ties: lower index).

    Returns:
        pairs: [P, 3] int64 rows (b, i, j), sorted by (b, i, j): deterministic.
    """
    radius, sl, dl, ts, td = _prepare(src, dst, radius, src_lengths, dst_lengths, src_transform, dst_transform)
    cap = -1 if max_pairs is None else C.count(max_pairs, "max_pairs", allow_zero=False)
    return torch.ops.pcgrasp.radius_pairs(src, dst, sl, dl, ts, td, radius, cap)


@torch.library.register_fake("pcgrasp::correspondences")
def _(src, dst, src_lengths, dst_lengths, src_transform, dst_transform, radius):
    B, N, _ = src.shape
    return src.new_empty((B, N), dtype=torch.int64), src.new_empty((B, N))


@torch.library.register_fake("pcgrasp::radius_pairs")
def _(src, dst, src_lengths, dst_lengths, src_transform, dst_transform, radius, max_pairs):
    P = torch.library.get_ctx().new_dynamic_size()
    return src.new_empty((P, 3), dtype=torch.int64)
