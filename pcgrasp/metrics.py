"""Grasp-joint metrics, feature-match recall and the summary statistics of sweeps.
Angles in radians; coverage thresholds in degrees."""
import math

import numpy as np
import torch


def mean_sd(values, scale=1.0):
    """(mean, SD with ddof 1; 0 for one value) of ``values`` x ``scale``, or None when empty:
    the "mean ± SD over seeds" cells of the sweep tables."""
    if len(values) == 0:
        return None
    v = np.asarray(values, np.float64) * scale
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


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


def feature_match_recall(kp_feat, kp_world, valid, feat2, world2, epsilon):
    """Label-free registration quality of two views' features (FCGF /
    PointContrast style), for one view pair.

    Args:
        kp_feat: [M, C] features of view 1's keypoints; kp_world: [M, 3] their
            world positions; valid: [M] bool, keypoints that have a true
            correspondence in view 2 (world distance < epsilon).
        feat2: [N, C] features of all of view 2's points; world2: [N, 3].
        epsilon: the correspondence radius (metres).

    For each valid keypoint i, j = argmax_n kp_feat_i . feat2_n (nearest
    neighbour in feature space; ties: lowest index). Returns a dict of floats:
        hit_ratio: fraction of valid keypoints whose j is within epsilon of
            x_i in the world frame;
        feature_match_recall: the same, counting only mutual nearest
            neighbours (i is also the nearest keypoint to j in feature space);
        pos_sim, neg_sim: mean similarity of each valid keypoint to its true
            match (the nearest view-2 point in the world frame) and to the
            other valid keypoints' matches; sim_gap = pos_sim - neg_sim.
    NaN values when no keypoint is valid.
    """
    kp_feat, feat2 = kp_feat.detach().double(), feat2.detach().double()
    kp_world, world2 = kp_world.detach().double(), world2.detach().double()
    valid = valid.detach().bool()
    nan = float("nan")
    if not bool(valid.any()) or feat2.shape[0] == 0:
        return {"hit_ratio": nan, "feature_match_recall": nan, "pos_sim": nan, "neg_sim": nan, "sim_gap": nan}
    q, qw = kp_feat[valid], kp_world[valid]
    j = (q @ feat2.T).argmax(1)                           # [V]
    hit = ((world2[j] - qw) ** 2).sum(1) < epsilon ** 2
    back = (feat2[j] @ q.T).argmax(1)                     # nearest valid keypoint to each j
    mutual = back == torch.arange(len(q), device=q.device)
    true_j = torch.cdist(qw, world2).argmin(1)            # each keypoint's true match
    s = q @ feat2[true_j].T                               # [V, V]
    V = len(q)
    pos = float(s.diagonal().mean())
    neg = float((s.sum() - s.diagonal().sum()) / (V * (V - 1))) if V > 1 else nan
    return {"hit_ratio": float(hit.double().mean()), "feature_match_recall": float((hit & mutual).double().mean()),
            "pos_sim": pos, "neg_sim": neg, "sim_gap": pos - neg}
