"""GSNet's training loss (``models/loss.py`` of graspness_implementation).

loss = objectness + 10 graspness + 100 view + 15 score + 10 width, with

- ``loss/stage1_objectness_loss``: cross-entropy of ``objectness_score`` [B, 2, N] against
  ``objectness_label`` [B, N], mean over all points;
- ``loss/stage1_graspness_loss``: SmoothL1 (beta 1) of ``graspness_score`` [B, N] against
  ``graspness_label`` [B, N] (or [B, N, 1]), mean over the points whose objectness label is 1;
- ``loss/stage2_view_loss``: SmoothL1 of ``view_score`` [B, M, V] against
  ``batch_grasp_view_graspness``, mean over everything;
- ``loss/stage3_score_loss``: SmoothL1 of ``grasp_score_pred`` [B, M, A, D] against
  ``batch_grasp_score``, mean over everything;
- ``loss/stage3_width_loss``: SmoothL1 of ``grasp_width_pred`` against 10 x
  ``batch_grasp_width``, mean over the cells whose score label is > 0.

Also GSNet's diagnostics: ``stage1_objectness_acc`` / ``_prec`` / ``_recall``,
``stage1_graspness_acc_rank_error``.

Deviation: a masked mean over an empty mask (no object point, no positive score label) is
0 here, not NaN as in GSNet (so one such batch does not poison training); the precision /
recall / rank-error diagnostics are NaN there, as they are undefined.
"""
import torch
import torch.nn.functional as F

__all__ = ["get_loss", "LOSS_WEIGHTS"]

LOSS_WEIGHTS = {"objectness": 1.0, "graspness": 10.0, "view": 100.0, "score": 15.0, "width": 10.0}


def _masked_mean(x, mask):
    return (x * mask.to(x.dtype)).sum() / mask.sum().clamp_min(1).to(x.dtype)


def _need(end_points, *keys):
    for k in keys:
        if k not in end_points:
            raise ValueError(f"end_points lacks {k!r} (a training-mode forward with labels first)")
    return [end_points[k] for k in keys]


def get_loss(end_points):
    """(overall loss, end_points with the ``loss/*`` terms and diagnostics)."""
    obj_score, obj_label, g_score, g_label, view_score, view_label, s_pred, s_label, w_pred, w_label = _need(
        end_points, "objectness_score", "objectness_label", "graspness_score", "graspness_label", "view_score",
        "batch_grasp_view_graspness", "grasp_score_pred", "batch_grasp_score", "grasp_width_pred",
        "batch_grasp_width")
    if obj_score.dim() != 3 or obj_score.shape[1] != 2:
        raise ValueError(f"objectness_score must be [B, 2, N], got {tuple(obj_score.shape)}")
    B, _, N = obj_score.shape
    obj_label = obj_label.long()
    if obj_label.shape != (B, N):
        raise ValueError(f"objectness_label must be [{B}, {N}], got {tuple(obj_label.shape)}")
    if g_label.dim() == 3 and g_label.shape[-1] == 1:
        g_label = g_label.squeeze(-1)
    if g_score.dim() == 3 and g_score.shape[1] == 1:
        g_score = g_score.squeeze(1)
    if g_score.shape != (B, N) or g_label.shape != (B, N):
        raise ValueError(f"graspness_score and graspness_label must be [{B}, {N}], got {tuple(g_score.shape)} and "
                         f"{tuple(g_label.shape)}")
    for name, p, t in (("view_score", view_score, view_label), ("grasp_score_pred", s_pred, s_label),
                       ("grasp_width_pred", w_pred, w_label)):
        if p.shape != t.shape:
            raise ValueError(f"{name} {tuple(p.shape)} and its label {tuple(t.shape)} must have the same shape")

    # half-precision predictions (autocast) are compared in float32
    obj_score, g_score, view_score, s_pred, w_pred = (
        x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        for x in (obj_score, g_score, view_score, s_pred, w_pred))
    objectness = F.cross_entropy(obj_score, obj_label)
    obj_mask = obj_label.bool()
    graspness = _masked_mean(F.smooth_l1_loss(g_score, g_label.to(g_score.dtype), reduction="none"), obj_mask)
    view = F.smooth_l1_loss(view_score, view_label.to(view_score.dtype))
    score = F.smooth_l1_loss(s_pred, s_label.to(s_pred.dtype))
    width = _masked_mean(F.smooth_l1_loss(w_pred, 10 * w_label.to(w_pred.dtype), reduction="none"), s_label > 0)
    W = LOSS_WEIGHTS
    loss = (W["objectness"] * objectness + W["graspness"] * graspness + W["view"] * view + W["score"] * score
            + W["width"] * width)

    end_points["loss/stage1_objectness_loss"] = objectness
    end_points["loss/stage1_graspness_loss"] = graspness
    end_points["loss/stage2_view_loss"] = view
    end_points["loss/stage3_score_loss"] = score
    end_points["loss/stage3_width_loss"] = width
    end_points["loss/overall_loss"] = loss
    with torch.no_grad():
        pred = obj_score.argmax(1)
        hit = (pred == obj_label).float()
        end_points["stage1_objectness_acc"] = hit.mean()
        end_points["stage1_objectness_prec"] = hit[pred == 1].mean()
        end_points["stage1_objectness_recall"] = hit[obj_mask].mean()
        gs = g_score.detach()[obj_mask].clamp(0.0, 0.99)
        gl = g_label.detach().to(gs.dtype)[obj_mask].clamp(0.0, 0.99)
        end_points["stage1_graspness_acc_rank_error"] = (
            (torch.trunc(gs * 20) - torch.trunc(gl * 20)).abs() / 20.0).mean()
    return loss, end_points
