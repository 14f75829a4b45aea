"""Synchronised batch normalisation for any torch.distributed backend (gloo on the CPU included).

``torch.nn.SyncBatchNorm`` runs on CUDA only; this one all-reduces plain tensors, so DDP
training on CPU processes (gloo) normalises every layer with the statistics of the whole
global batch, as one process holding all of it would.

Forward: each process sums its rows per channel (sum, sum of squares, and the row count,
which may differ between processes and may be zero), one all-reduce, then the global mean
and biased variance normalise the local rows; the running statistics get the global mean and
the unbiased variance (as torch's BatchNorm). Backward: one all-reduce of the two per-channel
gradient sums (sum of dy, sum of dy * x_hat) gives each process the exact gradient of the
*sum of all processes' losses* with respect to its own rows; the weight and bias gradients stay
local (DDP averages them, as it averages every parameter's gradient). Sums are accumulated in
float64. Outside a multi-process group (or in eval mode) the module is exactly
``torch.nn.BatchNorm*`` (``F.batch_norm``).
"""
import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["SyncBatchNorm", "sync_batch_norm", "convert_sync_batchnorm"]


def _world_size(group):
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _all_reduce(t, group):
    if _world_size(group) > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def _compute_dtype(x):
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _channel_view(x, c):
    """[N, C, *] -> [C, N * prod(*)] (a copy only when the layout needs it)."""
    return x.transpose(0, 1).reshape(c, -1)


class _SyncBatchNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, group):
        c = x.shape[1]
        xc = _channel_view(x, c).double()
        local = torch.cat([xc.sum(1), (xc * xc).sum(1), xc.new_full((1,), xc.shape[1])])
        stats = _all_reduce(local, group)
        n = float(stats[-1])
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)} "
                             f"({n:.0f} values per channel over all processes)")
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)   # biased: what normalises
        invstd = (var + eps).rsqrt()
        if running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(momentum * mean.to(running_mean.dtype))
                running_var.mul_(1 - momentum).add_(momentum * (var * n / (n - 1)).to(running_var.dtype))
        dt = _compute_dtype(x)
        mean, invstd = mean.to(dt), invstd.to(dt)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x.to(dt) - mean.view(shape)) * invstd.view(shape)
        if weight is not None:
            y = y * weight.to(dt).view(shape) + bias.to(dt).view(shape)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.n, ctx.group = n, group
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, invstd = ctx.saved_tensors
        c = x.shape[1]
        shape = [1, c] + [1] * (x.dim() - 2)
        xhat = (x.to(mean.dtype) - mean.view(shape)) * invstd.view(shape)
        g = dy.to(mean.dtype)
        sum_dy = _channel_view(g, c).sum(1, dtype=torch.float64)
        sum_dy_xhat = _channel_view(g * xhat, c).sum(1, dtype=torch.float64)
        gw = gb = None
        if weight is not None:   # local: DDP averages parameter gradients itself
            gw = sum_dy_xhat.to(weight.dtype) if ctx.needs_input_grad[1] else None
            gb = sum_dy.to(weight.dtype) if ctx.needs_input_grad[2] else None
        gx = None
        if ctx.needs_input_grad[0]:
            tot = (_all_reduce(torch.cat([sum_dy, sum_dy_xhat]), ctx.group) / ctx.n).to(mean.dtype)
            scale = invstd if weight is None else invstd * weight.to(mean.dtype)
            gx = (scale.view(shape) * (g - tot[:c].view(shape) - xhat * tot[c:].view(shape))).to(x.dtype)
        return gx, gw, gb, None, None, None, None, None


def sync_batch_norm(x, running_mean, running_var, weight=None, bias=None, momentum=0.1, eps=1e-5,
                    process_group=None):
    """Training-mode batch norm over the rows of all processes of ``process_group``
    (the default group when None; one process when torch.distributed is not initialised).

    Args:
        x: [N, C] or [N, C, *] float (N may differ between processes, and be 0).
        running_mean: [C] buffer updated in place with the global mean
            (``(1 - momentum) * old + momentum * new``), or None.
        running_var: [C] buffer updated in place the same way with the global unbiased
            variance, or None.
        weight: [C] affine scale, or None.
        bias: [C] affine shift, or None.
        momentum: as ``torch.nn.functional.batch_norm``.
        eps: as ``torch.nn.functional.batch_norm``.
        process_group: the ``torch.distributed`` group; None for the default group.

    Every process of the group must call it (and its backward) in the same order. Raises
    ValueError when the group holds at most one value per channel in total.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError("x must be a floating-point tensor of shape [N, C] or [N, C, *], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"{name} must have shape [{c}], got {tuple(t.shape)}")
    if (running_mean is None) != (running_var is None) or (weight is None) != (bias is None):
        raise ValueError("running_mean and running_var (and weight and bias) must be given together")
    return _SyncBatchNormFn.apply(x, weight, bias, running_mean, running_var, float(momentum), float(eps),
                                  process_group)


class SyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """``torch.nn.BatchNorm1d/2d/3d`` with statistics over all processes of
    ``process_group`` whenever batch statistics are used (training mode, or no running
    statistics). Same parameters, buffers and state_dict keys as torch's BatchNorm, so
    checkpoints move freely between the two. In eval mode with running statistics, or
    without a multi-process group, it is exactly torch's BatchNorm."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected an input of at least 2 dimensions [N, C, *], got {input.dim()}D")

    def forward(self, x):
        self._check_input_dim(x)
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        if not batch_stats or _world_size(self.process_group) == 1:
            return super().forward(x)
        track = self.training and self.track_running_stats and self.running_mean is not None
        momentum = 0.0 if self.momentum is None else self.momentum
        if track and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:   # cumulative moving average, as torch
                momentum = 1.0 / float(self.num_batches_tracked)
        return sync_batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                               self.weight, self.bias, momentum, self.eps, self.process_group)


_PLAIN = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def convert_sync_batchnorm(module, process_group=None):
    """Replaces every ``torch.nn.BatchNorm1d/2d/3d`` inside ``module`` (and so the
    ``.bn`` of every ``pcgrasp.nn.SparseBatchNorm``) by a :class:`SyncBatchNorm` with the
    same parameters and buffers (shared, not copied), in place; returns the module (a new
    one when ``module`` itself is such a BatchNorm). State_dict keys do not change."""
    if isinstance(module, _PLAIN) and not isinstance(module, SyncBatchNorm):
        new = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new = convert_sync_batchnorm(child, process_group)
        if new is not child:
            setattr(module, name, new)
    return module
