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
