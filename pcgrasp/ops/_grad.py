"""Backward of squared distances d[b,m,j] = |q[b,m] - p[b, idx[b,m,j]]|^2,
shared by knn and ball_query. Written with pcgrasp ops so it works on every
device and is itself differentiable."""
import torch


def dist2_backward(grad, query, points, idx):
    """Returns (grad_query [B, M, D], grad_points [B, N, D])."""
    B, M, k = idx.shape
    D = points.shape[2]
    valid = idx >= 0
    g = torch.where(valid, grad, torch.zeros_like(grad)).to(query.dtype)
    # raw ops (idx comes from our own kernel): no value checks while tracing
    nbr = torch.ops.pcgrasp.gather_points(points, idx.reshape(B, M * k)).reshape(B, M, k, D)  # -1 rows: 0
    diff = query.unsqueeze(2) - nbr
    gd = 2 * g.unsqueeze(-1) * diff
    grad_q = gd.sum(2)
    grad_p = torch.ops.pcgrasp.gather_points_backward(
        (-gd).reshape(B, M * k, D), idx.reshape(B, M * k), points.shape[1])
    return grad_q, grad_p
