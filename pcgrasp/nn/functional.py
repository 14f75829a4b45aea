"""Sparse convolution over a kernel map.

:func:`sparse_conv` runs on the fused kernels of ``pcgrasp.ops`` (``csrc/sparse_conv``): on the CPU,
blocks of output rows, each gathering its pairs per offset, one GEMM, and adding into its own rows
(OpenMP across blocks, no atomics); on CUDA one launch per layer over all offsets. The input gradient
is the same kernel on the map sorted by input row, which the :class:`KernelMap` computes once and
keeps for every layer that shares it (a strided convolution, its transposed convolution, and both
backward passes). :func:`sparse_conv_reference` is the plain per-offset gather -> matmul -> scatter in
PyTorch that the tests hold the kernels to."""
import torch

from .. import ops

__all__ = ["KernelMap", "sparse_conv", "sparse_conv_reference"]


class _Pairs:
    """One kernel map's pairs in the two orders the kernels need, shared by a map and its
    transposed view: sorted by output row (as ``ops.kernel_map`` returns them) and, made on
    first use, sorted by input row."""

    def __init__(self, in_idx, out_idx, counts, n_in, n_out):
        self.by_out = (in_idx, out_idx)
        self._by_in = None
        self.counts, self.n_in, self.n_out = counts, n_in, n_out

    @property
    def by_in(self):
        if self._by_in is None:
            self._by_in = ops.transpose_kernel_map(*self.by_out, self.counts, self.n_in)
        return self._by_in


class KernelMap:
    """The (input row, output row) pairs of every kernel offset.

    Args: in_idx, out_idx [P] int64 grouped by offset; counts (K ints, on the host); n_in, n_out:
    the row counts of the input and output maps; identity_offset: the offset whose pairs are
    known to be every row onto itself (the zero offset of a kernel whose input and output are
    the same coordinate map), run as one dense product, or None. Known from the maps' strides,
    not read from the pairs: no host sync.

    Inside a group the pairs are re-sorted by output row, and their index ranges checked once here
    (a device sync on CUDA, skipped under ``ops.data_checks(False)``), unless ``sorted_by_out=True``
    says they come straight from ``ops.kernel_map`` (sorted, in range)."""

    def __init__(self, in_idx, out_idx, counts, n_in, n_out, identity_offset=None, sorted_by_out=False):
        counts = [int(c) for c in counts]
        for v, n in ((n_in, "n_in"), (n_out, "n_out")):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{n} must be an int >= 0, got {v!r}")
        if identity_offset is not None:
            if not 0 <= identity_offset < len(counts):
                raise ValueError(f"identity_offset must be in [0, {len(counts)}), got {identity_offset}")
            if not (n_in == n_out == counts[identity_offset]):
                raise ValueError(f"offset {identity_offset} cannot map every row onto itself: it has "
                                 f"{counts[identity_offset]} pairs for {n_in} input and {n_out} output rows")
        for t, n, hi in ((in_idx, "in_idx", n_in), (out_idx, "out_idx", n_out)):
            if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.dtype != torch.int64:
                raise ValueError(f"{n} must be a 1-D int64 tensor")
            if t.shape[0] != sum(counts):
                raise ValueError(f"{n} has {t.shape[0]} pairs, counts add up to {sum(counts)}")
            if not sorted_by_out and ops._checks.data_checks_enabled(t) and t.numel() and (
                    int(t.min()) < 0 or int(t.max()) >= hi):
                raise IndexError(f"{n} must be in [0, {hi}), got values in [{int(t.min())}, {int(t.max())}]")
        if in_idx.device != out_idx.device:
            raise ValueError(f"in_idx and out_idx must be on one device, got {in_idx.device} and {out_idx.device}")
        if not sorted_by_out and in_idx.numel():  # by (offset, out, in), stable
            out_idx, in_idx = ops.transpose_kernel_map(out_idx, in_idx, counts, n_out)
        self.counts, self.n_in, self.n_out = counts, n_in, n_out
        self.identity_offset = identity_offset
        self._pairs = _Pairs(in_idx, out_idx, counts, n_in, n_out)
        self._flipped = False

    @staticmethod
    def identity(n):
        """One offset, every row onto itself (a 1x1 convolution): a dense product."""
        t = KernelMap.__new__(KernelMap)
        t.counts, t.n_in, t.n_out, t.identity_offset = [n], n, n, 0
        t._pairs, t._flipped = None, False
        return t

    def transposed(self):
        """The same pairs read backwards (a transposed convolution's map), sharing this map's
        cached orders."""
        t = KernelMap.__new__(KernelMap)
        t.counts, t.n_in, t.n_out, t.identity_offset = self.counts, self.n_out, self.n_in, self.identity_offset
        t._pairs, t._flipped = self._pairs, not self._flipped
        return t

    @property
    def dense(self):
        """True for a map that is only the identity offset (no pairs to read)."""
        return self._pairs is None

    def pairs(self):
        """(read rows, written rows), sorted by written row inside each offset: the forward order."""
        if self._flipped:
            i, o = self._pairs.by_in
            return o, i
        return self._pairs.by_out

    def pairs_by_read(self):
        """(read rows, written rows), sorted by read row: the input gradient's order."""
        if self._flipped:
            i, o = self._pairs.by_out
            return o, i
        return self._pairs.by_in

    @property
    def in_idx(self):
        return self.pairs()[0]

    @property
    def out_idx(self):
        return self.pairs()[1]

    def __repr__(self):
        return (f"KernelMap(K={len(self.counts)}, pairs={sum(self.counts)}, n_in={self.n_in}, n_out={self.n_out}, "
                f"identity_offset={self.identity_offset})")


def _identity(km):
    return -1 if km.identity_offset is None else km.identity_offset


class _SparseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats, weight, kmap):
        ctx.save_for_backward(feats, weight)
        ctx.kmap = kmap
        r, w = kmap.pairs()
        # the KernelMap's pairs are checked where it was made (or come from ops.kernel_map)
        return ops.sparse_conv_pairs(feats, weight, r, w, kmap.counts, kmap.n_out, _identity(kmap),
                                     check_map=False)

    @staticmethod
    def backward(ctx, grad):
        feats, weight = ctx.saved_tensors
        kmap = ctx.kmap
        grad = grad.to(feats.dtype).contiguous()
        gf = gw = None
        if ctx.needs_input_grad[0]:  # the same pairs, read backwards (sorted by input row), with W^T
            r, w = kmap.pairs_by_read()
            gf = ops.sparse_conv_pairs(grad, weight, w, r, kmap.counts, kmap.n_in, _identity(kmap),
                                       transpose_weight=True, check_map=False)
        if ctx.needs_input_grad[1]:
            r, w = kmap.pairs()
            gw = ops.sparse_conv_weight_grad(feats, grad, r, w, kmap.counts, _identity(kmap), check_map=False)
        return gf, gw, None


def _check(features, weight, kernel_map):
    if not isinstance(kernel_map, KernelMap):
        raise TypeError(f"kernel_map must be a KernelMap, got {type(kernel_map).__name__}")
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise ValueError("features must be a [n_in, Cin] tensor")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 3 or weight.shape[0] != len(kernel_map.counts) \
            or weight.shape[1] != features.shape[1]:
        raise ValueError(f"weight must have shape [{len(kernel_map.counts)}, {features.shape[1]}, Cout], "
                         f"got {tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")
    if features.shape[0] != kernel_map.n_in:
        raise ValueError(f"features has {features.shape[0]} rows, the kernel map's input has {kernel_map.n_in}")
    dev = features.device.type
    if torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        return features.to(dt), weight.to(dt)
    if weight.dtype != features.dtype:
        raise TypeError(f"features ({features.dtype}) and weight ({weight.dtype}) must have the same dtype")
    return features, weight


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
    features, weight = _check(features, weight, kernel_map)
    with torch.autocast(features.device.type, enabled=False):
        if kernel_map.dense:
            return features @ weight[0]
        return _SparseConv.apply(features, weight, kernel_map)


def sparse_conv_reference(features, weight, kernel_map):
    """The same convolution as plain PyTorch: per offset, gather -> matmul -> scatter-add
    (``index_put_(accumulate=True)``), fp32 accumulation for half types, differentiable by
    autograd. Slow; the oracle the fused kernels are tested against, on CPU and CUDA."""
    features, weight = _check(features, weight, kernel_map)
    acc = torch.float32 if features.dtype in (torch.float16, torch.bfloat16) else features.dtype
    out = features.new_zeros((kernel_map.n_out, weight.shape[2]), dtype=acc)
    with torch.autocast(features.device.type, enabled=False):
        if kernel_map.dense:
            return (features.to(acc) @ weight[0].to(acc)).to(features.dtype)
        r, w = kernel_map.pairs()
        start = 0
        for k, c in enumerate(kernel_map.counts):
            if c:
                ri, wi = r[start:start + c], w[start:start + c]
                out = out.index_put((wi,), features.index_select(0, ri).to(acc) @ weight[k].to(acc), accumulate=True)
            start += c
    return out.to(features.dtype)
