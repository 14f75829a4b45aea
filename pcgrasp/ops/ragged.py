"""Conversions between masked, padded and packed ragged batches.

Example: FPS of 1024 seeds from each sample's graspable points, one call for
the whole batch (GSNet)::

    padded, lengths, index = masked_to_padded(points, graspable, return_index=True)
    seeds = farthest_point_sample(padded, 1024, lengths=lengths)   # into padded
    seed_idx = torch.where(seeds >= 0, index.gather(1, seeds.clamp(min=0)), -1)  # into points
"""
import torch

from . import _checks as C

__all__ = ["masked_to_padded", "padded_to_packed", "packed_to_padded"]


def masked_to_padded(x, mask, return_index=False):
    """Keeps the rows where ``mask`` is True, left-aligned per batch item.

    Args:
        x: [B, N, *]; mask: bool [B, N].
        return_index: also return where each kept row came from.

    Returns:
        padded: [B, L, *] with L = max kept per item (zeros past lengths);
        lengths: [B] int64; and, with return_index, index: [B, L] int64 into
        dimension 1 of x (-1 past lengths). Row order is preserved.
    """
    C.tensor(x, "x")
    C.tensor(mask, "mask")
    if x.dim() < 2:
        raise ValueError(f"x must have shape [B, N, ...], got shape {tuple(x.shape)}")
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"mask must be a bool tensor of shape {tuple(x.shape[:2])}, got {mask.dtype} "
                         f"{tuple(mask.shape)}")
    C.same_device(x, mask, "x", "mask")
    B, N = mask.shape
    lengths = mask.sum(1)
    L = int(lengths.max()) if B else 0
    # stable order: kept rows first, in index order
    key = torch.where(mask, torch.arange(N, device=x.device), N + torch.arange(N, device=x.device))
    src = key.argsort(dim=1)[:, :L]
    slot = torch.arange(L, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
    trailing = [1] * (x.dim() - 2)
    padded = torch.gather(x, 1, src.view(B, L, *trailing).expand(B, L, *x.shape[2:]))
    padded = torch.where(slot.view(B, L, *trailing), padded, torch.zeros_like(padded))
    if return_index:
        return padded, lengths, torch.where(slot, src, torch.full_like(src, -1))
    return padded, lengths


def padded_to_packed(x, lengths):
    """[B, N, *] with lengths [B] -> packed [sum(lengths), *] (batch-major)."""
    C.tensor(x, "x")
    if x.dim() < 2:
        raise ValueError(f"x must have shape [B, N, ...], got shape {tuple(x.shape)}")
    B, N = x.shape[:2]
    lengths = C.lengths(lengths, "lengths", B, N, x)
    mask = torch.arange(N, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
    return x[mask]


def packed_to_padded(x, lengths, max_len=None, pad_value=0):
    """Packed [P, *] with per-item lengths [B] (sum = P) -> padded [B, L, *]."""
    C.tensor(x, "x")
    if x.dim() < 1:
        raise ValueError(f"x must have shape [P, ...], got shape {tuple(x.shape)}")
    C.tensor(lengths, "lengths")
    if lengths.dim() != 1 or lengths.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"lengths must be a 1-D integer tensor, got {lengths.dtype} {tuple(lengths.shape)}")
    lengths = lengths.to(device=x.device, dtype=torch.int64)
    if int(lengths.sum()) != x.shape[0] or bool((lengths < 0).any()):
        raise ValueError(f"lengths must be non-negative and sum to x.shape[0]={x.shape[0]}, got sum {int(lengths.sum())}")
    B = lengths.shape[0]
    L = int(lengths.max()) if B else 0
    if max_len is not None:
        max_len = C.count(max_len, "max_len")
        if max_len < L:
            raise ValueError(f"max_len={max_len} is smaller than the longest item ({L})")
        L = max_len
    out = x.new_full((B, L, *x.shape[1:]), pad_value)
    mask = torch.arange(L, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
    out[mask] = x
    return out
