"""GSNet's ``pred_decode``: network outputs -> graspnetAPI grasp arrays."""
import numpy as np
import torch

from ...geometry.gripper import GRASP_MAX_WIDTH
from ...geometry.views import batch_viewpoint_params_to_matrix

__all__ = ["pred_decode"]


def pred_decode(end_points, num_angle=None, num_depth=None):
    """GSNet's ``pred_decode``: per cloud a [M, 17] tensor in graspnetAPI's GraspGroup column
    order (score, width, height, depth, rotation 9 row-major, translation 3, object_id = -1).

    Per seed the best (angle, depth) cell of ``grasp_score_pred`` [B, M, A, D]; angle =
    a pi / A, depth = (d + 1) * 0.01 m; width = 1.2 * grasp_width_pred / 10 clipped to
    [0, 0.1]; height 0.02; rotation ``batch_viewpoint_params_to_matrix(-grasp_top_view_xyz,
    angle)``; translation ``xyz_graspable``. Returns float32 tensors (computed in the
    predictions' dtype)."""
    for key in ("grasp_score_pred", "grasp_width_pred", "grasp_top_view_xyz", "xyz_graspable"):
        if key not in end_points:
            raise ValueError(f"end_points lacks {key!r} (run the model first)")
    score = end_points["grasp_score_pred"]
    width = end_points["grasp_width_pred"]
    if score.dim() != 4 or width.shape != score.shape:
        raise ValueError(f"grasp_score_pred and grasp_width_pred must both be [B, M, A, D], got "
                         f"{tuple(score.shape)} and {tuple(width.shape)}")
    B, M, A, D = score.shape
    center = end_points["xyz_graspable"]
    view_xyz = end_points["grasp_top_view_xyz"]
    if center.shape != (B, M, 3) or view_xyz.shape != (B, M, 3):
        raise ValueError(f"xyz_graspable and grasp_top_view_xyz must be [{B}, {M}, 3], got "
                         f"{tuple(center.shape)} and {tuple(view_xyz.shape)}")
    dt = torch.promote_types(score.dtype, torch.float32)  # half predictions (autocast) decode in float32
    score, width = score.to(dt), width.to(dt)
    s, ind = score.reshape(B, M, A * D).max(-1)
    angle = (ind // D).to(dt) * (np.pi / A)
    depth = (ind % D + 1).to(dt) * 0.01
    w = (1.2 * width.reshape(B, M, A * D) / 10.0).gather(2, ind.unsqueeze(-1)).squeeze(-1)
    w = w.clamp(0.0, GRASP_MAX_WIDTH)
    rot = batch_viewpoint_params_to_matrix(-view_xyz.to(dt), angle).reshape(B, M, 9)
    ones = torch.ones_like(s)
    out = torch.cat([s[..., None], w[..., None], 0.02 * ones[..., None], depth[..., None], rot,
                     center.to(dt), -ones[..., None]], -1)
    return [g.float() for g in out.detach().unbind(0)]


