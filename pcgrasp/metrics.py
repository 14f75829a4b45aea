"""Grasp-joint metrics. Angles in radians; coverage thresholds in degrees."""
import math

import torch


def grasp_joint_metrics(pred, logits, target, thresholds_deg=(10, 15, 20)):
    """Metrics of K joint hypotheses against the recorded joints.

    Args:
        pred: [B, K, J]; logits: [B, K]; target: [B, J] (radians).

    Returns a dict of floats:
        top_logit_rmse: RMSE over all samples and joints of the top-logit
            hypothesis (what inference uses);
        best_of_k_rmse: the same for each sample's best hypothesis (smallest
            squared error);
        selection_gap: top_logit_rmse - best_of_k_rmse;
        coverage@T: fraction of samples whose best hypothesis has a
            per-sample joint RMSE (over the J joints) below T degrees;
        diversity: mean over samples of the mean pairwise RMS distance between
            hypotheses (0 when K = 1).
    """
    pred, logits, target = pred.detach().double(), logits.detach().double(), target.detach().double()
    B, K, J = pred.shape
    err = ((pred - target.unsqueeze(1)) ** 2).mean(-1)  # [B, K] per-sample mean squared error
    top = err[torch.arange(B), logits.argmax(1)]
    best = err.min(1).values
    out = {
        "top_logit_rmse": math.sqrt(float(top.mean())),
        "best_of_k_rmse": math.sqrt(float(best.mean())),
    }
    out["selection_gap"] = out["top_logit_rmse"] - out["best_of_k_rmse"]
    for t in thresholds_deg:
        out[f"coverage@{t}"] = float((best.sqrt() < math.radians(t)).double().mean())
    if K > 1:
        d = ((pred.unsqueeze(1) - pred.unsqueeze(2)) ** 2).mean(-1).sqrt()  # [B, K, K]
        iu = torch.triu_indices(K, K, 1)
        out["diversity"] = float(d[:, iu[0], iu[1]].mean())
    else:
        out["diversity"] = 0.0
    return out


def energy_alignment(e_pos, e_neg):
    """Fraction of positives whose energy is strictly below every negative.

    Args:
        e_pos: [P] energies of the successful grasps of a batch (P >= 1).
        e_neg: [Q] energies of its failed grasps (Q = 0: every positive counts).

    Returns a float in [0, 1] (a tie with the lowest negative does not count).
    NaN energies raise ValueError.
    """
    for name, e in (("e_pos", e_pos), ("e_neg", e_neg)):
        if not isinstance(e, torch.Tensor) or e.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor, got "
                             f"{tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__}")
        if torch.isnan(e).any():
            raise ValueError(f"{name} contains NaN")
    if e_pos.numel() == 0:
        raise ValueError("e_pos must hold at least one positive energy")
    if e_neg.numel() == 0:
        return 1.0
    return float((e_pos.detach().double() < e_neg.detach().double().min()).double().mean())
