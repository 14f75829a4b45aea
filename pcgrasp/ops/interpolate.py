"""PointNet++ feature propagation: three-neighbour interpolation."""
import torch

from . import _checks as C

__all__ = ["three_interpolate", "inverse_distance_weights"]


def three_interpolate(features, idx, weight):
    """Weighted sum of three neighbours' features.

    Args:
        features: [B, N, C] float (channels last).
        idx: [B, M, 3] int64 from ``three_nn``; -1 entries contribute nothing.
        weight: [B, M, 3] float, e.g. ``inverse_distance_weights(dist2)``.

    Returns:
        [B, M, C] = sum_j weight[b, m, j] * features[b, idx[b, m, j], :].

    Differentiable w.r.t. features and weight.
    """
    C.tensor(features, "features")
    if features.dim() != 3:
        raise ValueError(f"features must have shape [B, N, C], got shape {tuple(features.shape)}")
    if features.dtype not in C.FLOAT_DTYPES:
        raise TypeError(f"features must be a floating tensor, got {features.dtype}")
    B, N, _ = features.shape
    idx = C.index(idx, "idx", B, N, features)
    if idx.dim() != 3 or idx.shape[2] != 3:
        raise ValueError(f"idx must have shape [B, M, 3], got shape {tuple(idx.shape)}")
    C.tensor(weight, "weight")
    if weight.shape != idx.shape:
        raise ValueError(f"weight must have shape {tuple(idx.shape)} like idx, got {tuple(weight.shape)}")
    if weight.dtype not in C.FLOAT_DTYPES:
        raise TypeError(f"weight must be a floating tensor, got {weight.dtype}")
    C.same_device(weight, features, "weight", "features")
    return torch.ops.pcgrasp.three_interpolate(features, idx, weight)


def inverse_distance_weights(dist2, eps=1e-8):
    """PointNet++ weights from ``three_nn`` distances: w_j = 1 / (d_j + eps),
    normalised over j; padding (+inf) gets weight 0. dist2: [B, M, 3] squared
    distances (PointNet++ uses squared distances here too)."""
    w = 1.0 / (dist2 + eps)
    w = torch.where(torch.isfinite(dist2), w, torch.zeros_like(w))
    return w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)


@torch.library.register_fake("pcgrasp::three_interpolate")
def _(features, idx, weight):
    return features.new_empty((features.shape[0], idx.shape[1], features.shape[2]))


@torch.library.register_fake("pcgrasp::three_interpolate_backward")
def _(grad_out, features, idx, weight):
    return features.new_empty(features.shape), weight.new_empty(weight.shape)


def _setup(ctx, inputs, output):
    features, idx, weight = inputs
    ctx.save_for_backward(features, idx, weight)


def _backward(ctx, grad):
    features, idx, weight = ctx.saved_tensors
    gf, gw = torch.ops.pcgrasp.three_interpolate_backward(grad.contiguous(), features, idx, weight)
    return gf, None, gw


torch.library.register_autograd("pcgrasp::three_interpolate", _backward, setup_context=_setup)
