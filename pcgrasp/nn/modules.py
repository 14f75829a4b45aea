"""Sparse convolution layers with MinkowskiEngine 0.5.4's parameters and conventions."""
import math

import torch

from .functional import KernelMap, sparse_conv
from .sparse_tensor import SparseTensor

__all__ = ["SparseConv3d", "SparseConvTranspose3d", "SparseBatchNorm", "SparseReLU"]


def _triple(v, name):
    vals = (v,) * 3 if isinstance(v, int) and not isinstance(v, bool) else tuple(v)
    if len(vals) != 3 or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in vals):
        raise ValueError(f"{name} must be a positive int or 3 positive ints, got {v!r}")
    return vals


class _SparseConvBase(torch.nn.Module):
    transpose = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, bias=False):
        super().__init__()
        for v, n in ((in_channels, "in_channels"), (out_channels, "out_channels"), (stride, "stride")):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{n} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _triple(kernel_size, "kernel_size")
        self.dilation = _triple(dilation, "dilation")
        self.stride = stride
        self.kernel_volume = math.prod(self.kernel_size)
        # ME: a plain [Cin, Cout] matrix when the kernel is one voxel and the stride 1
        self.use_mm = self.kernel_volume == 1 and stride == 1
        shape = (in_channels, out_channels) if self.use_mm else (self.kernel_volume, in_channels, out_channels)
        self.kernel = torch.nn.Parameter(torch.empty(shape))
        self.bias = torch.nn.Parameter(torch.empty(1, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # ME's default: U(-1/sqrt(n), 1/sqrt(n)), n = (Cout if transposed else Cin) * kernel volume
        n = (self.out_channels if self.transpose else self.in_channels) * self.kernel_volume
        bound = 1.0 / math.sqrt(n)
        with torch.no_grad():
            self.kernel.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, bias={self.bias is not None}")

    def _out_stride(self, x):
        raise NotImplementedError

    def forward(self, x):
        if not isinstance(x, SparseTensor):
            raise TypeError(f"{type(self).__name__} expects a SparseTensor, got {type(x).__name__}")
        if x.F.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} input channels, got {x.F.shape[1]}")
        if self.use_mm:
            out_stride = x.tensor_stride
            f = sparse_conv(x.F, self.kernel.unsqueeze(0), KernelMap.identity(len(x)))
        else:
            out_stride = self._out_stride(x)
            cm = x.coordinate_manager
            if self.transpose:  # the strided conv's map (fine -> coarse), read backwards
                km = cm.kernel_map(out_stride, x.tensor_stride, self.kernel_size, self.dilation).transposed()
            else:
                km = cm.kernel_map(x.tensor_stride, out_stride, self.kernel_size, self.dilation)
            f = sparse_conv(x.F, self.kernel, km)
        if self.bias is not None:
            f = f + self.bias.to(f.dtype)
        return SparseTensor(f, tensor_stride=out_stride, coordinate_manager=x.coordinate_manager)


class SparseConv3d(_SparseConvBase):
    """ME's ``MinkowskiConvolution`` (dimension 3): ``out[u] += F[u + offset_k] @ kernel[k]``.

    Stride 1 keeps the input map and its row order; stride s outputs the map
    downsampled to tensor stride ``x.tensor_stride * s`` (``ops.downsample_coords``).
    Parameters: ``kernel`` [K, Cin, Cout] ([Cin, Cout] for kernel size 1 and stride 1)
    and optional ``bias`` [1, Cout], offsets in ``ops.kernel_offsets`` order.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, bias=False):
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, bias)

    def _out_stride(self, x):
        if self.stride == 1:
            return x.tensor_stride
        return x.coordinate_manager.strided(x.tensor_stride, self.stride)


class SparseConvTranspose3d(_SparseConvBase):
    """ME's ``MinkowskiConvolutionTranspose`` (dimension 3): writes onto the finer map at
    tensor stride ``x.tensor_stride / stride`` that the matching strided conv came from,
    using that conv's kernel map in reverse (``out[v] += F[u] @ kernel[k]`` where
    ``v = u + offset_k`` at the fine stride)."""

    transpose = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, bias=False):
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, bias)

    def _out_stride(self, x):
        if x.tensor_stride % self.stride:
            raise ValueError(f"tensor stride {x.tensor_stride} is not divisible by the transposed stride {self.stride}")
        out = x.tensor_stride // self.stride
        x.coordinate_manager.coordinates(out)  # a clear error when no finer map exists
        return out


class SparseBatchNorm(torch.nn.Module):
    """ME's ``MinkowskiBatchNorm``: a ``torch.nn.BatchNorm1d`` at ``.bn`` over the rows
    (``convert_sync_batchnorm`` swaps it for a ``SyncBatchNorm`` for multi-process training)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(num_features, eps=eps, momentum=momentum, affine=affine,
                                       track_running_stats=track_running_stats)

    def forward(self, x):
        return x.replace_features(self.bn(x.F))


class SparseReLU(torch.nn.Module):
    """ReLU on the features. ``inplace=True`` (ME's ``MinkowskiReLU(inplace=True)``, as GSNet's
    blocks use it) overwrites the input's features, with ``torch.nn.ReLU(inplace=True)``'s rules:
    autograd raises if the old values were still needed. Right after a batch norm or a sum it
    saves one activation-sized allocation per call (the backbone's peak memory)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x):
        return x.replace_features(torch.relu_(x.F) if self.inplace else torch.relu(x.F))

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""
