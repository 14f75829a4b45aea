"""Losses."""
import math

import torch
from torch.nn import functional as F

LOG_ALPHA_RANGE = (math.log(1e-2), math.log(10.0))


def wta_loss(pred, logits, target, alpha):
    """Winner-takes-all loss for K joint hypotheses.

    Args:
        pred: [B, K, J] hypotheses; logits: [B, K]; target: [B, J].
        alpha: weight of the classification term (float or scalar tensor).

    With k* = argmin_k ||pred_k - target||^2 (squared error summed over
    joints): L = mean_b( ||pred_{b,k*} - target_b||^2 + alpha * CE(logits_b, k*) ).
    Only the winning hypothesis gets the regression gradient.
    """
    err = ((pred - target.unsqueeze(1)) ** 2).sum(-1)  # [B, K]
    best = err.argmin(1)
    reg = err.gather(1, best.unsqueeze(1)).squeeze(1)
    return (reg + alpha * F.cross_entropy(logits, best, reduction="none")).mean()


def clamped_alpha(log_alpha):
    """alpha = exp(log_alpha) with log_alpha clamped to LOG_ALPHA_RANGE."""
    return torch.exp(log_alpha.clamp(*LOG_ALPHA_RANGE))


def mse_loss(pred, target):
    """Squared error summed over joints, mean over the batch (pred [B, 1, J])."""
    return ((pred[:, 0] - target) ** 2).sum(-1).mean()


def _check_energies(name, e, dims):
    if not isinstance(e, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(e).__name__}")
    if e.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(f'{d} dims' for d in dims)}, got shape {tuple(e.shape)}")
    if not e.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {e.dtype}")


def energy_nce_loss(e_pos, e_neg, tau=1.0):
    """NCE loss of an energy model (low energy = good grasp).

    Args:
        e_pos: [P] energies of the positives, E(x_i, y_i) (P >= 1).
        e_neg: [P, Q] negatives per positive, or [Q] negatives shared by every
            positive (the batch's failed grasps). Q may be 0.
        tau: temperature > 0.

    Returns the scalar mean over positives of
        l_i = e_i/tau + log( exp(-e_i/tau) + sum_j exp(-e_neg_ij/tau) )
            = -log softmax_0([-e_i, -e_neg_i1, ...] / tau),
    computed as logsumexp([0, (e_i - e_ij)/tau]), so no energy overflows; l_i >= 0.
    """
    _check_energies("e_pos", e_pos, (1,))
    _check_energies("e_neg", e_neg, (1, 2))
    if not isinstance(tau, (int, float)) or isinstance(tau, bool) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    P = e_pos.shape[0]
    if P == 0:
        raise ValueError("e_pos must hold at least one positive energy")
    if e_neg.dim() == 2 and e_neg.shape[0] != P:
        raise ValueError(f"e_neg [P, Q] must have P = {P} rows (one per positive), got shape {tuple(e_neg.shape)}")
    neg = e_neg if e_neg.dim() == 2 else e_neg.unsqueeze(0).expand(P, -1)
    # l_i = logsumexp([0, (e_i - e_ij) / tau]_j): energy differences first, so
    # large but close energies lose no precision
    diff = (e_pos.unsqueeze(1) - neg.to(e_pos.dtype)) / tau  # [P, Q]
    return torch.logsumexp(torch.cat([torch.zeros_like(e_pos).unsqueeze(1), diff], 1), 1).mean()


def graspcontrast_loss(feat1, feat2, xyz, valid=None, tau=0.07, gamma=None):
    """GraspContrast's loss (Eq. 5) on matched keypoint features, mean over the
    positive pairs:

        L = -mean_{i valid} log( exp(f_i.g_i / tau) / sum_{k valid} NF_ik exp(f_i.g_k / tau) ),
        NF_ik = 1(|x_i - x_k| >= gamma)  (and NF_ii = 1),

    feat1 [B, M, C] (view 1's keypoints), feat2 [B, M, C] (their matches in
    view 2), xyz [B, M, 3] world-frame keypoint positions, valid [B, M] bool
    (rows without a match: no loss, never a negative). ``gamma=None`` is plain
    PointInfoNCE (the ``fne=false`` ablation). Negatives come from the same
    scene pair only. A thin wrapper of ``pcgrasp.ops.point_info_nce`` (tiled,
    never materialises M x M)."""
    from . import ops

    return ops.point_info_nce(feat1, feat2, xyz, tau=tau, gamma=gamma, valid=valid)
