"""Sparse convolution as gather -> matmul -> scatter-add over a kernel map."""
import torch

__all__ = ["sparse_conv"]


def _acc_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class _SparseConv(torch.autograd.Function):
    """out[o] += F[i] @ W[k] for every pair (i, o) of offset k; accumulates in fp32 for
    half types. Saves only the inputs (no [P, C] intermediates)."""

    @staticmethod
    def forward(ctx, feats, weight, in_idx, out_idx, counts, n_out):
        ctx.save_for_backward(feats, weight, in_idx, out_idx)
        ctx.counts = counts
        out = feats.new_zeros((n_out, weight.shape[-1]), dtype=_acc_dtype(feats.dtype))
        for k, (i, o) in enumerate(zip(in_idx.split(counts), out_idx.split(counts))):
            if i.numel():
                out.index_add_(0, o, (feats.index_select(0, i) @ weight[k]).to(out.dtype))
        return out.to(feats.dtype)

    @staticmethod
    def backward(ctx, grad):
        feats, weight, in_idx, out_idx = ctx.saved_tensors
        grad = grad.to(feats.dtype)
        gf = gw = None
        if ctx.needs_input_grad[0]:
            gf = torch.zeros(feats.shape, dtype=_acc_dtype(feats.dtype), device=feats.device)
        if ctx.needs_input_grad[1]:
            gw = torch.zeros(weight.shape, dtype=_acc_dtype(weight.dtype), device=weight.device)
        for k, (i, o) in enumerate(zip(in_idx.split(ctx.counts), out_idx.split(ctx.counts))):
            if not i.numel():
                continue
            g = grad.index_select(0, o)
            if gf is not None:
                gf.index_add_(0, i, (g @ weight[k].t()).to(gf.dtype))
            if gw is not None:
                gw[k] = (feats.index_select(0, i).t() @ g).to(gw.dtype)
        return (None if gf is None else gf.to(feats.dtype), None if gw is None else gw.to(weight.dtype),
                None, None, None, None)


def sparse_conv(features, weight, in_idx, out_idx, counts, n_out):
    """Sparse convolution over a kernel map.

    Args:
        features: [N, Cin] float; weight: [K, Cin, Cout] (same dtype as features,
            except under autocast, which casts both to the autocast dtype).
        in_idx, out_idx: [P] int64 pairs grouped by offset; counts: list of K ints.
        n_out: the number of output rows.

    Returns:
        [n_out, Cout]: ``out[o] = sum over pairs (i, o) of offset k of features[i] @ weight[k]``
        (a correlation, as MinkowskiEngine), accumulated in float32 for half types.
    """
    if weight.dim() != 3 or weight.shape[0] != len(counts) or weight.shape[1] != features.shape[1]:
        raise ValueError(f"weight must have shape [{len(counts)}, {features.shape[1]}, Cout], "
                         f"got {tuple(weight.shape)}")
    dev = features.device.type
    if torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        features, weight = features.to(dt), weight.to(dt)
    elif weight.dtype != features.dtype:
        raise TypeError(f"features ({features.dtype}) and weight ({weight.dtype}) must have the same dtype")
    with torch.autocast(dev, enabled=False):
        return _SparseConv.apply(features, weight, in_idx, out_idx, counts, n_out)
