"""Gathering channels-last features by index, and its adjoint."""
import math

import torch

from . import _checks as C

__all__ = ["gather_points", "scatter_add_points"]


def gather_points(features, idx):
    """Rows of each cloud's features picked by index.

    Args:
        features: [B, N, C] float (channels last).
        idx: [B, *] int64 indices into dimension 1, or -1 for padding.

    Returns:
        [B, *, C]: out[b, i..., :] = features[b, idx[b, i...], :], zeros where
        idx is -1. An index outside [-1, N) raises IndexError.

    Differentiable w.r.t. features; repeated indices accumulate gradients.
    """
    C.tensor(features, "features")
    if features.dim() != 3:
        raise ValueError(f"features must have shape [B, N, C], got shape {tuple(features.shape)}")
    if features.dtype not in C.FLOAT_DTYPES:
        raise TypeError(f"features must be a floating tensor, got {features.dtype}")
    B, N, Ch = features.shape
    idx = C.index(idx, "idx", B, N, features)
    rest = idx.shape[1:]
    L = math.prod(idx.shape[1:])  # not reshape(B, -1): B may be 0
    out = torch.ops.pcgrasp.gather_points(features, idx.reshape(B, L))
    return out.reshape(B, *rest, Ch)


def scatter_add_points(values, idx, n):
    """Adjoint of gather_points: out[b, idx[b, i...], :] += values[b, i..., :].

    Args:
        values: [B, *, C] float; idx: [B, *] int64 (-1 entries are dropped);
        n: number of rows N of the output.

    Returns:
        [B, n, C] in the dtype of values. Differentiable w.r.t. values.
    """
    C.tensor(values, "values")
    n = C.count(n, "n")
    B = values.shape[0]
    idx = C.index(idx, "idx", B, n, values)
    if values.shape[:-1] != idx.shape:
        raise ValueError(f"values must have shape idx.shape + [C], got {tuple(values.shape)} and {tuple(idx.shape)}")
    Ch = values.shape[-1]
    L = math.prod(idx.shape[1:])
    return torch.ops.pcgrasp.gather_points_backward(values.reshape(B, L, Ch), idx.reshape(B, L), n)


@torch.library.register_fake("pcgrasp::gather_points")
def _(features, idx):
    return features.new_empty((features.shape[0], idx.shape[1], features.shape[2]))


@torch.library.register_fake("pcgrasp::gather_points_backward")
def _(grad, idx, N):
    return grad.new_empty((grad.shape[0], N, grad.shape[2]))


def _gather_setup(ctx, inputs, output):
    features, idx = inputs
    ctx.save_for_backward(idx)
    ctx.n = features.shape[1]


def _gather_backward(ctx, grad):
    (idx,) = ctx.saved_tensors
    return torch.ops.pcgrasp.gather_points_backward(grad.contiguous(), idx, ctx.n), None


def _scatter_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _scatter_backward(ctx, grad):
    (idx,) = ctx.saved_tensors
    return torch.ops.pcgrasp.gather_points(grad.contiguous(), idx), None, None


torch.library.register_autograd("pcgrasp::gather_points", _gather_backward, setup_context=_gather_setup)
torch.library.register_autograd("pcgrasp::gather_points_backward", _scatter_backward, setup_context=_scatter_setup)
