"""Sparse convolution over a kernel map: per offset, gather -> matmul -> scatter-add.

The scatter-add is ``index_put_(accumulate=True)``: on the CPU ``index_add_`` adds row by
row and measured ~10x slower here; a dense neighbour-table formulation (no scatter) did 3x
the matmul work on surface scenes (about a third of the 27 neighbours are occupied).

On the CPU, float32 / float64 go through NumPy (its bundled OpenBLAS): torch's CPU matmul
(MKL) and OpenMP-parallel gathers measured 2-4x slower per layer on the development VM's AMD
EPYC under load (see benchmarks/results). ``USE_NUMPY_ON_CPU = False`` switches that off.
The BLAS runs on ``NUMPY_BLAS_THREADS`` threads (default 1): its own thread pool next to torch's
spinning OpenMP threads oversubscribed the cores and made whole-network passes 2-5x slower."""
import contextlib

import numpy as np
import torch

USE_NUMPY_ON_CPU = True
NUMPY_BLAS_THREADS = 1
_controller = None


def _blas_threads():
    global _controller
    try:
        if _controller is None:
            from threadpoolctl import ThreadpoolController
            _controller = ThreadpoolController()
        return _controller.limit(limits=NUMPY_BLAS_THREADS, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl is an install requirement
        return contextlib.nullcontext()

__all__ = ["KernelMap", "sparse_conv"]


class KernelMap:
    """The (input row, output row) pairs of every kernel offset, split per offset.

    Args: in_idx, out_idx [P] int64 grouped by offset; counts (K ints, on the host); n_in, n_out:
    the row counts of the input and output maps; identity_offset: the offset whose pairs are
    known to be every row onto itself (the zero offset of a kernel whose input and output are
    the same coordinate map), run as a plain matmul with no gather / scatter, or None. Known
    from the maps' strides, not read from the pairs: no host sync."""

    def __init__(self, in_idx, out_idx, counts, n_in, n_out, identity_offset=None):
        counts = [int(c) for c in counts]
        self.counts, self.n_in, self.n_out = counts, n_in, n_out
        if identity_offset is not None and not (n_in == n_out == counts[identity_offset]):
            raise ValueError(f"offset {identity_offset} cannot map every row onto itself: it has "
                             f"{counts[identity_offset]} pairs for {n_in} input and {n_out} output rows")
        self.pairs = []
        for k, (i, o) in enumerate(zip(in_idx.split(counts), out_idx.split(counts))):
            if k == identity_offset:
                i = o = None  # the centre of a stride-1 kernel: a plain matmul, no gather / scatter
            if i is None or i.numel():
                self.pairs.append((k, i, o))

    @staticmethod
    def identity(n):
        """One offset, every row onto itself (a 1x1 convolution)."""
        t = KernelMap.__new__(KernelMap)
        t.counts, t.n_in, t.n_out, t.pairs = [n], n, n, [(0, None, None)]
        return t

    def transposed(self):
        """The same pairs read backwards (a transposed convolution's map)."""
        t = KernelMap.__new__(KernelMap)
        t.counts, t.n_in, t.n_out = self.counts, self.n_out, self.n_in
        t.pairs = [(k, o, i) for k, i, o in self.pairs]
        return t


def _acc_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _numpy_path(x):
    return USE_NUMPY_ON_CPU and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _conv(x, w, pairs, n_rows, transpose_w=False):
    """out[o] += x[i] @ w[k] (or w[k]^T) over the pairs; fp32 accumulation for half types."""
    cout = w.shape[1] if transpose_w else w.shape[2]
    if _numpy_path(x):
        xn, wn = x.detach().contiguous().numpy(), w.detach().to(x.dtype).contiguous().numpy()
        out = np.zeros((n_rows, cout), dtype=xn.dtype)
        with _blas_threads():
            for k, i, o in pairs:
                wk = wn[k].T if transpose_w else wn[k]
                if i is None:
                    out += xn @ wk
                else:  # o holds each row at most once per offset, so += is a scatter-add
                    out[o.numpy()] += np.take(xn, i.numpy(), axis=0) @ wk
        return torch.from_numpy(out)
    out = torch.zeros((n_rows, cout), dtype=_acc_dtype(x.dtype), device=x.device)
    for k, i, o in pairs:
        wk = w[k].t() if transpose_w else w[k]
        if i is None:
            out += (x @ wk).to(out.dtype)
        else:
            out.index_put_((o,), (x.index_select(0, i) @ wk).to(out.dtype), accumulate=True)
    return out.to(x.dtype)


def _backward_numpy(feats, weight, grad, kmap, need_f, need_w):
    """Both gradients in one pass over the offsets, gathering each offset's G rows once."""
    fn, gn = feats.detach().contiguous().numpy(), grad.detach().contiguous().numpy()
    wn = weight.detach().contiguous().numpy()
    gf = np.zeros_like(fn) if need_f else None
    gw = np.zeros_like(wn) if need_w else None
    with _blas_threads():
        for k, i, o in kmap.pairs:
            if i is None:
                if need_f:
                    gf += gn @ wn[k].T
                if need_w:
                    gw[k] = fn.T @ gn
                continue
            i, g = i.numpy(), np.take(gn, o.numpy(), axis=0)
            if need_f:  # i holds each row at most once per offset
                gf[i] += g @ wn[k].T
            if need_w:
                gw[k] = np.take(fn, i, axis=0).T @ g
    return (None if gf is None else torch.from_numpy(gf), None if gw is None else torch.from_numpy(gw), None)


class _SparseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats, weight, kmap):
        ctx.save_for_backward(feats, weight)
        ctx.kmap = kmap
        return _conv(feats, weight, kmap.pairs, kmap.n_out)

    @staticmethod
    def backward(ctx, grad):
        feats, weight = ctx.saved_tensors
        kmap = ctx.kmap
        grad = grad.to(feats.dtype)
        gf = gw = None
        if _numpy_path(feats):
            return _backward_numpy(feats, weight, grad, kmap, *ctx.needs_input_grad[:2])
        if ctx.needs_input_grad[0]:  # the same pairs, read backwards, with W^T
            gf = _conv(grad, weight, [(k, o, i) for k, i, o in kmap.pairs], kmap.n_in, transpose_w=True)
        if ctx.needs_input_grad[1]:
            gw = torch.zeros(weight.shape, dtype=_acc_dtype(weight.dtype), device=weight.device)
            for k, i, o in kmap.pairs:
                if i is None:
                    gw[k] = (feats.t() @ grad).to(gw.dtype)
                else:
                    gw[k] = (feats.index_select(0, i).t() @ grad.index_select(0, o)).to(gw.dtype)
            gw = gw.to(weight.dtype)
        return gf, gw, None


def sparse_conv(features, weight, kernel_map):
    """Sparse convolution over a :class:`KernelMap`.

    Args:
        features: [n_in, Cin] float; weight: [K, Cin, Cout], same dtype as features
            (under autocast both are cast to the autocast dtype).
        kernel_map: KernelMap with K offsets.

    Returns:
        [n_out, Cout]: ``out[o] = sum over pairs (i, o) of offset k of features[i] @ weight[k]``
        (a correlation, as MinkowskiEngine), accumulated in float32 for half types.
    """
    if weight.dim() != 3 or weight.shape[0] != len(kernel_map.counts) or weight.shape[1] != features.shape[1]:
        raise ValueError(f"weight must have shape [{len(kernel_map.counts)}, {features.shape[1]}, Cout], "
                         f"got {tuple(weight.shape)}")
    if features.shape[0] != kernel_map.n_in:
        raise ValueError(f"features has {features.shape[0]} rows, the kernel map's input has {kernel_map.n_in}")
    dev = features.device.type
    if torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        features, weight = features.to(dt), weight.to(dt)
    elif weight.dtype != features.dtype:
        raise TypeError(f"features ({features.dtype}) and weight ({weight.dtype}) must have the same dtype")
    with torch.autocast(dev, enabled=False):
        return _SparseConv.apply(features, weight, kernel_map)
