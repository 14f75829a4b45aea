"""Sparse convolution kernels over a kernel map (the fused CPU / CUDA ops under ``pcgrasp.nn``).

These are the raw, differentiable-by-hand ops; :func:`pcgrasp.nn.sparse_conv` wraps them with
autograd and the kernel-map cache. A kernel map is the pairs ``(in_idx[p], out_idx[p])`` of every
kernel offset, grouped by offset (``counts[k]`` pairs each) and, inside a group, sorted by the row
they write to -- the order :func:`pcgrasp.ops.kernel_map` returns.
"""
import torch

from . import _checks as C
from .transfer import host_to_device

__all__ = ["sparse_conv_pairs", "sparse_conv_weight_grad", "transpose_kernel_map"]


def _counts(counts, name="counts"):
    try:
        counts = [int(c) for c in counts]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of ints (pairs per kernel offset)") from None
    if not counts:
        raise ValueError(f"{name} must have one entry per kernel offset, got none")
    if any(c < 0 for c in counts):
        raise ValueError(f"{name} must be >= 0, got {counts}")
    return counts


def _pairs(in_idx, out_idx, counts, like):
    for t, n in ((in_idx, "in_idx"), (out_idx, "out_idx")):
        C.tensor(t, n)
        if t.dim() != 1 or t.dtype != torch.int64:
            raise ValueError(f"{n} must be a 1-D int64 tensor, got {t.dtype} of shape {tuple(t.shape)}")
        if t.shape[0] != sum(counts):
            raise ValueError(f"{n} has {t.shape[0]} pairs, counts add up to {sum(counts)}")
        C.same_device(t, like, n, "features")


def _map_problem(in_idx, out_idx, counts, n_in, n_out, identity, sorted_groups):
    """What is wrong with the pairs' values, on any device, with one host read: None, or
    (exception type, message) for an index out of range or, with ``sorted_groups``, an offset's
    group not sorted by ``out_idx``. The identity offset's pairs are never read, so not checked."""
    P = in_idx.numel()
    if P == 0:
        return None
    group = torch.repeat_interleave(torch.arange(len(counts), device=in_idx.device),
                                    host_to_device(counts, in_idx.device, torch.int64), output_size=P)
    read = group != identity
    flags = [(((in_idx < 0) | (in_idx >= n_in)) & read).any(),
             (((out_idx < 0) | (out_idx >= n_out)) & read).any()]
    if sorted_groups and P > 1:
        flags.append(((out_idx[1:] < out_idx[:-1]) & (group[1:] == group[:-1]) & read[1:]).any())
    flags = torch.stack(flags).tolist() + [False]
    if flags[0]:
        return IndexError, f"in_idx must be in [0, {n_in})"
    if flags[1]:
        return IndexError, f"out_idx must be in [0, {n_out})"
    if flags[2]:
        return ValueError, ("the pairs of each offset must be sorted by the row they write to (out_idx; for "
                            "the input gradient, the transposed map sorted by in_idx)")
    return None


def _kernel_checks_itself(t):
    return t.device.type == "cpu"


def _check_map_values(in_idx, out_idx, counts, n_in, n_out, identity, sorted_groups):
    """Raises what :func:`_map_problem` finds, off the CPU. The CPU kernel checks the same itself;
    the CUDA kernel does not (it skips pairs out of range and would miss the pairs of an unsorted
    group), so there the check runs here, unless value checks are off."""
    if _kernel_checks_itself(in_idx) or not C.data_checks_enabled(in_idx):
        return
    problem = _map_problem(in_idx, out_idx, counts, n_in, n_out, identity, sorted_groups)
    if problem is not None:
        raise problem[0](problem[1])


def _identity(identity, counts, n_in, n_out):
    if identity is None or identity == -1:
        return -1
    if isinstance(identity, bool) or not isinstance(identity, int) or not 0 <= identity < len(counts):
        raise ValueError(f"identity must be None, -1 or an offset index in [0, {len(counts)}), got {identity!r}")
    if not n_in == n_out == counts[identity]:
        raise ValueError(f"identity offset {identity} cannot map every row onto itself: it has {counts[identity]} "
                         f"pairs for {n_in} input and {n_out} output rows")
    return identity


def sparse_conv_pairs(features, weight, in_idx, out_idx, counts, n_out, identity=None, transpose_weight=False,
                      check_map=True):
    """``out[o] = sum over pairs (i, o) of offset k of features[i] @ W_k`` (a correlation, as
    MinkowskiEngine), fused per block of output rows (CPU) or in one launch (CUDA).

    Args:
        features: [N, Cin] float16 / bfloat16 / float32 / float64.
        weight: [K, Cin, Cout] (``W_k = weight[k]``) or, with ``transpose_weight``, [K, Cout, Cin]
            (``W_k = weight[k]^T``: the input gradient's form); the dtype of features.
        in_idx: [P] int64 input rows of the pairs, grouped by offset.
        out_idx: [P] int64 output rows of the pairs, sorted inside each offset's group.
        counts: K ints, pairs per offset (host values: no device sync).
        n_out: output rows.
        identity: an offset whose pairs are every row onto itself (N == n_out == counts[k]), run as
            one dense product without reading its pairs; None for none.
        check_map: check the pairs' values (in range, sorted inside each group): IndexError /
            ValueError naming the index. Costs one device sync on CUDA (skipped under
            ``ops.data_checks(False)``); the CPU kernel always checks. ``pcgrasp.nn`` passes False
            for the maps it built and checked itself.

    Returns:
        [n_out, Cout] in the dtype of features; half types accumulate in float32.

    Deterministic: the sum order is fixed, whatever the thread count.
    """
    C.tensor(features, "features")
    C.tensor(weight, "weight")
    if features.dim() != 2 or not features.is_floating_point():
        raise ValueError(f"features must be a [N, Cin] floating tensor, got {features.dtype} of shape "
                         f"{tuple(features.shape)}")
    counts = _counts(counts)
    if weight.dtype != features.dtype:
        raise TypeError(f"weight ({weight.dtype}) must have the dtype of features ({features.dtype})")
    cin_axis = 2 if transpose_weight else 1
    if weight.dim() != 3 or weight.shape[0] != len(counts) or weight.shape[cin_axis] != features.shape[1]:
        want = f"[{len(counts)}, Cout, {features.shape[1]}]" if transpose_weight else \
            f"[{len(counts)}, {features.shape[1]}, Cout]"
        raise ValueError(f"weight must have shape {want}, got {tuple(weight.shape)}")
    C.same_device(weight, features, "weight", "features")
    if isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 0:
        raise ValueError(f"n_out must be an int >= 0, got {n_out!r}")
    _pairs(in_idx, out_idx, counts, features)
    identity = _identity(identity, counts, features.shape[0], n_out)
    if check_map:
        _check_map_values(in_idx, out_idx, counts, features.shape[0], n_out, identity, True)
    return torch.ops.pcgrasp.sparse_conv(features, weight, in_idx, out_idx, counts, n_out, identity,
                                         bool(transpose_weight))


def sparse_conv_weight_grad(features, grad, in_idx, out_idx, counts, identity=None, check_map=True):
    """``[K, Cin, Cout]``: per offset k, the sum over its pairs (i, o) of ``features[i]^T grad[o]``
    (the weight gradient of :func:`sparse_conv_pairs`; pairs in any order inside a group).
    Deterministic: fixed chunks of pairs, summed in order. ``check_map`` as in
    :func:`sparse_conv_pairs` (ranges only)."""
    C.tensor(features, "features")
    C.tensor(grad, "grad")
    if features.dim() != 2 or grad.dim() != 2 or not features.is_floating_point() or grad.dtype != features.dtype:
        raise ValueError("features [N, Cin] and grad [n_out, Cout] must be 2-D floating tensors of one dtype, got "
                         f"{features.dtype} {tuple(features.shape)} and {grad.dtype} {tuple(grad.shape)}")
    C.same_device(grad, features, "grad", "features")
    counts = _counts(counts)
    _pairs(in_idx, out_idx, counts, features)
    identity = _identity(identity, counts, features.shape[0], grad.shape[0])
    if check_map:
        _check_map_values(in_idx, out_idx, counts, features.shape[0], grad.shape[0], identity, False)
    return torch.ops.pcgrasp.sparse_conv_weight_grad(features, grad, in_idx, out_idx, counts, identity)


def transpose_kernel_map(in_idx, out_idx, counts, n_in):
    """The same pairs re-sorted by input row inside each offset's group (stable: ties keep their
    output order): the order the input gradient, and a transposed convolution, write in.

    Returns (in_idx, out_idx) of that order. One sort on the device; no host sync."""
    counts = _counts(counts)
    C.tensor(in_idx, "in_idx")
    _pairs(in_idx, out_idx, counts, in_idx)
    if in_idx.numel() == 0:
        return in_idx, out_idx
    group = torch.repeat_interleave(torch.arange(len(counts), device=in_idx.device),
                                    host_to_device(counts, in_idx.device, torch.int64), output_size=in_idx.numel())
    order = torch.sort(group * max(int(n_in), 1) + in_idx, stable=True).indices
    return in_idx[order], out_idx[order]


@torch.library.register_fake("pcgrasp::sparse_conv")
def _(features, weight, in_idx, out_idx, counts, n_out, identity, transpose_weight):
    return features.new_empty((n_out, weight.shape[1] if transpose_weight else weight.shape[2]))


@torch.library.register_fake("pcgrasp::sparse_conv_weight_grad")
def _(features, grad, in_idx, out_idx, counts, identity):
    return features.new_empty((len(counts), features.shape[1], grad.shape[1]))
