"""Kernel maps and coordinate downsampling for sparse convolution
(MinkowskiEngine 0.5.4 conventions); used by :mod:`pcgrasp.nn`."""
import torch

from . import _checks as C

__all__ = ["kernel_map", "downsample_coords", "kernel_offsets"]


def _triple(v, name, lo=1):
    """An int or a sequence of 3 ints, each >= lo and < 2^31 -> list of 3 ints."""
    if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_floating_point():
        v = int(v)
    vals = [v] * 3 if isinstance(v, int) and not isinstance(v, bool) else v
    try:
        vals = list(vals)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of 3 ints, got {type(v).__name__}") from None
    if len(vals) != 3 or any(isinstance(x, bool) or not isinstance(x, int) for x in vals):
        raise TypeError(f"{name} must be an int or a sequence of 3 ints, got {v!r}")
    if any(x < lo or x >= 2**31 for x in vals):
        raise ValueError(f"{name} must be in [{lo}, 2^31), got {v!r}")
    return vals


def _coords(c, name, like=None):
    C.tensor(c, name)
    if c.dim() != 2 or c.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (batch, x, y, z), got shape {tuple(c.shape)}")
    if c.dtype != torch.int32:
        raise TypeError(f"{name} must be an int32 tensor, got {c.dtype}")
    if like is not None:
        C.same_device(c, like, name, "in_coords")
    return c


def kernel_offsets(kernel_size, dilation=1, tensor_stride=1):
    """The [K, 3] int64 offsets of a kernel, in MinkowskiEngine's order: index k
    enumerates x fastest, then y, then z; per axis, odd size K gives
    ``(a - K // 2) * dilation * tensor_stride`` (centred), even size gives
    ``a * tensor_stride`` (not centred, dilation unused), a = 0 .. K - 1."""
    ks, dil, ts = (_triple(kernel_size, "kernel_size"), _triple(dilation, "dilation"),
                   _triple(tensor_stride, "tensor_stride"))
    axes = []
    for d in range(3):
        a = torch.arange(ks[d], dtype=torch.int64)
        axes.append((a - ks[d] // 2) * dil[d] * ts[d] if ks[d] % 2 else a * ts[d])
    z, y, x = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], 1)


def kernel_map(in_coords, out_coords, kernel_size, dilation=1, tensor_stride=1):
    """The (input row, output row) pairs of every kernel offset.

    Args:
        in_coords: [N, 4] int32 rows (batch, x, y, z) in voxel units.
        out_coords: [M, 4] int32 rows, same device.
        kernel_size: int >= 1 or a sequence of 3 (x, y, z). The offsets are
            :func:`kernel_offsets` (ME's order; the tensor stride of the *input* map
            scales them).
        dilation: int >= 1 or a sequence of 3 (x, y, z).
        tensor_stride: int >= 1 or a sequence of 3 (x, y, z), of the input map.

    Returns:
        in_idx, out_idx: [P] int64, every pair with ``in_coords[i] == out_coords[o]
            + offset_k`` (same batch), grouped by offset k, then ordered by o, then i.
        counts: [K] int64, the number of pairs of each offset (``in_idx.split(counts)``).

    Never all pairs: on the CPU each row is packed into one int64 key (when the columns'
    spans fit 62 bits, as in any real scene) and every query is a hash lookup; otherwise, and
    on CUDA, a binary search over the lexicographically sorted input rows. Integer arithmetic
    only, int64 intermediates.
    """
    _coords(in_coords, "in_coords")
    _coords(out_coords, "out_coords", like=in_coords)
    ks = _triple(kernel_size, "kernel_size")
    if ks[0] * ks[1] * ks[2] > 2**20:
        raise ValueError(f"kernel_size volume must be at most 2^20, got {kernel_size!r}")
    return torch.ops.pcgrasp.kernel_map(in_coords, out_coords, ks, _triple(dilation, "dilation"),
                                        _triple(tensor_stride, "tensor_stride"))


def downsample_coords(coords, stride):
    """Stride-s downsampling of a coordinate map (ME's strided coordinate map).

    Args:
        coords: [N, 4] int32 rows (batch, x, y, z).
        stride: int or 3 ints, the *total* step ``tensor_stride * s`` of the new map.

    Returns:
        out: [V, 4] int32, the unique rows (b, floor(x / stride) * stride, ...) (floor,
            also for negative coordinates), sorted lexicographically.
        inverse: [N] int64, the out row of every input row.
    """
    _coords(coords, "coords")
    return torch.ops.pcgrasp.downsample_coords(coords, _triple(stride, "stride"))


@torch.library.register_fake("pcgrasp::kernel_map")
def _(in_coords, out_coords, kernel_size, dilation, tensor_stride):
    P = torch.library.get_ctx().new_dynamic_size()
    K = kernel_size[0] * kernel_size[1] * kernel_size[2]
    return (in_coords.new_empty((P,), dtype=torch.int64), in_coords.new_empty((P,), dtype=torch.int64),
            in_coords.new_empty((K,), dtype=torch.int64))


@torch.library.register_fake("pcgrasp::downsample_coords")
def _(coords, stride):
    V = torch.library.get_ctx().new_dynamic_size()
    return coords.new_empty((V, 4)), coords.new_empty((coords.shape[0],), dtype=torch.int64)
