"""GraspContrast's false-negative mask."""
import torch

from . import _checks as C

__all__ = ["false_negative_mask"]


def false_negative_mask(xyz, gamma):
    """Which pairs may serve as negatives (GraspContrast Eq. 4, NF_ik).

    Args:
        xyz: [B, M, 3] keypoint positions (world frame).
        gamma: float >= 0, the false-negative distance gamma_D.

    Returns:
        bool [B, M, M]: True where |x_i - x_k| >= gamma (computed as
        dist2 >= gamma**2), and on the diagonal (the positive pair).

    Materialises M x M booleans; for the loss itself use
    :func:`point_info_nce`, which never does.
    """
    C.cloud(xyz, "xyz", max_d=3)
    if xyz.shape[2] != 3:
        raise ValueError(f"xyz must have shape [B, M, 3], got shape {tuple(xyz.shape)}")
    gamma = C.positive(gamma, "gamma", allow_zero=True)
    return torch.ops.pcgrasp.false_negative_mask(xyz, gamma)


@torch.library.register_fake("pcgrasp::false_negative_mask")
def _(xyz, gamma):
    B, M, _ = xyz.shape
    return xyz.new_empty((B, M, M), dtype=torch.bool)
