"""Tiled PointInfoNCE with false-negative elimination."""
import torch

from . import _checks as C

__all__ = ["point_info_nce"]


def point_info_nce(feat_a, feat_b, xyz=None, tau=0.07, gamma=None, valid=None, reduction="mean"):
    """PointInfoNCE between two views' matched keypoint features, with
    GraspContrast's false-negative elimination (Eq. 5).

    Args:
        feat_a: [B, M, C] float; row i of feat_a is the positive of row i of
            feat_b; every other row of feat_b is a negative unless masked.
        feat_b: [B, M, C], same dtype and device as feat_a.
        xyz: [B, M, 3] keypoint positions; needed when ``gamma`` is given.
        tau: temperature > 0 (0.07 in GraspContrast).
        gamma: None for plain PointInfoNCE, or gamma_D >= 0: negatives k with
            |x_i - x_k| < gamma are dropped from row i's denominator.
        valid: optional bool [B, M]; False rows (padding) add no loss and are
            never negatives.
        reduction: "mean" (over valid rows), "sum" or "none" ([B, M], 0 on
            invalid rows).

    Returns:
        loss: L = -sum_i log( exp(a_i.b_i / tau) / sum_k NF_ik exp(a_i.b_k / tau) ).

    Computed tile by tile with an online log-sum-exp, forward and backward
    (for both feature tensors): the M x M logits never exist in memory at
    once. Half inputs are computed in float32.
    """
    for x, n in ((feat_a, "feat_a"), (feat_b, "feat_b")):
        C.tensor(x, n)
        if x.dim() != 3:
            raise ValueError(f"{n} must have shape [B, M, C], got shape {tuple(x.shape)}")
        if x.dtype not in C.FLOAT_DTYPES:
            raise TypeError(f"{n} must be a floating tensor, got {x.dtype}")
    if feat_a.shape != feat_b.shape:
        raise ValueError(f"feat_a and feat_b must have the same shape [B, M, C], got {tuple(feat_a.shape)} "
                         f"and {tuple(feat_b.shape)}")
    if feat_a.dtype != feat_b.dtype:
        raise TypeError(f"feat_a and feat_b must have the same dtype, got {feat_a.dtype} and {feat_b.dtype}")
    C.same_device(feat_a, feat_b, "feat_a", "feat_b")
    tau = C.positive(tau, "tau")
    # the kernels divide by tau in the compute dtype: a subnormal tau gives inf logits and a NaN loss
    tiny = torch.finfo(torch.float64 if feat_a.dtype == torch.float64 else torch.float32).tiny
    if tau < tiny:
        raise ValueError(f"tau must be at least {tiny:.3g} for {feat_a.dtype} features (1 / tau must be finite), "
                         f"got {tau}")
    B, M, _ = feat_a.shape
    if gamma is None:
        g = -1.0
    else:
        g = C.positive(gamma, "gamma", allow_zero=True)
        if xyz is None:
            raise ValueError("xyz is required when gamma is given")
    if xyz is not None:
        C.cloud(xyz, "xyz", max_d=3)
        if tuple(xyz.shape) != (B, M, 3):
            raise ValueError(f"xyz must have shape [{B}, {M}, 3], got shape {tuple(xyz.shape)}")
        C.same_device(xyz, feat_a, "xyz", "feat_a")
    if valid is not None:
        C.tensor(valid, "valid")
        if tuple(valid.shape) != (B, M):
            raise ValueError(f"valid must have shape [{B}, {M}], got shape {tuple(valid.shape)}")
        if valid.dtype != torch.bool:
            raise TypeError(f"valid must be a bool tensor, got {valid.dtype}")
        C.same_device(valid, feat_a, "valid", "feat_a")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    rows, _ = torch.ops.pcgrasp.point_info_nce(feat_a, feat_b, xyz if g >= 0 else None, valid, tau, g)
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    n = valid.sum() if valid is not None else torch.tensor(B * M, device=rows.device)
    return rows.sum() / n.clamp(min=1).to(rows.dtype)


@torch.library.register_fake("pcgrasp::point_info_nce")
def _(feat_a, feat_b, xyz, valid, tau, gamma):
    B, M, _ = feat_a.shape
    dt = torch.float32 if feat_a.dtype in (torch.float16, torch.bfloat16) else feat_a.dtype
    return feat_a.new_empty((B, M), dtype=dt), feat_a.new_empty((B, M), dtype=dt)


@torch.library.register_fake("pcgrasp::point_info_nce_backward")
def _(grad, feat_a, feat_b, xyz, valid, lse, tau, gamma):
    return torch.empty_like(feat_a), torch.empty_like(feat_b)


def _setup(ctx, inputs, output):
    feat_a, feat_b, xyz, valid, tau, gamma = inputs
    ctx.save_for_backward(feat_a, feat_b, xyz, valid, output[1])
    ctx.tau, ctx.gamma = tau, gamma


def _backward(ctx, grad_loss, grad_lse):
    feat_a, feat_b, xyz, valid, lse = ctx.saved_tensors
    if grad_loss is None:
        return (None,) * 6
    ga, gb = torch.ops.pcgrasp.point_info_nce_backward(grad_loss, feat_a, feat_b, xyz, valid, lse, ctx.tau, ctx.gamma)
    return ga, gb, None, None, None, None


torch.library.register_autograd("pcgrasp::point_info_nce", _backward, setup_context=_setup)
