"""SparseTensor and its coordinate-map cache (MinkowskiEngine's coordinate manager)."""
import torch

from .. import ops
from .functional import KernelMap

__all__ = ["CoordinateManager", "SparseTensor", "sparse_cat", "sparse_tensor_from_points", "features_at_points"]


def _positive_int(v, name):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return v


def _zero_offset(kernel_size):
    """Index of the offset (0, 0, 0) in ``ops.kernel_offsets`` order (x fastest): a = K // 2 on
    an odd axis, a = 0 on an even one. Plain ints: no tensor, no host read."""
    ks = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * 3
    a = [k // 2 if k % 2 else 0 for k in ks]
    return a[0] + ks[0] * (a[1] + ks[1] * a[2])


class CoordinateManager:
    """The coordinate maps of one forward pass, keyed by tensor stride (one map per
    stride, as in ME), with the downsampled maps and kernel maps built from them.

    Every map and kernel map is built once and reused by all tensors sharing the
    manager; a stride-s conv and the matching transposed conv share one kernel map.
    """

    def __init__(self):
        self._maps = {}          # tensor stride -> [V, 4] int32 coordinates
        self._kernel_maps = {}   # (in stride, out stride, kernel, dilation) -> (in_idx, out_idx, counts)

    def insert(self, coordinates, tensor_stride=1):
        """Registers `coordinates` ([V, 4] int32 unique rows) as the map at `tensor_stride`."""
        tensor_stride = _positive_int(tensor_stride, "tensor_stride")
        old = self._maps.get(tensor_stride)
        if old is not None and old is not coordinates and not torch.equal(old, coordinates):
            raise ValueError(f"this coordinate manager already holds a different map at tensor stride {tensor_stride}")
        self._maps[tensor_stride] = coordinates

    def coordinates(self, tensor_stride):
        try:
            return self._maps[tensor_stride]
        except KeyError:
            raise KeyError(f"no coordinate map at tensor stride {tensor_stride}; maps exist at strides "
                           f"{sorted(self._maps)}") from None

    def strided(self, tensor_stride, stride):
        """The map at tensor_stride * stride, created by downsampling if missing."""
        out_stride = tensor_stride * stride
        if out_stride not in self._maps:
            self._maps[out_stride] = ops.downsample_coords(self.coordinates(tensor_stride), out_stride)[0]
        return out_stride

    def kernel_map(self, in_stride, out_stride, kernel_size, dilation):
        """The :class:`KernelMap` between the maps at in_stride and out_stride, offsets at
        in_stride (ME: the region lives on the input map)."""
        key = (in_stride, out_stride, kernel_size, dilation)
        km = self._kernel_maps.get(key)
        if km is None:
            cin, cout = self.coordinates(in_stride), self.coordinates(out_stride)
            in_idx, out_idx, counts = ops.kernel_map(cin, cout, kernel_size, dilation, in_stride)
            # the one host read of this map (per-offset sizes); every layer with this key reuses it
            counts = counts.tolist()
            identity = None
            if in_stride == out_stride:  # same map: the zero offset pairs every row with itself
                identity = _zero_offset(kernel_size)
            km = self._kernel_maps[key] = KernelMap(in_idx, out_idx, counts, len(cin), len(cout), identity,
                                                    sorted_by_out=True)
        return km


class SparseTensor:
    """Features on a sparse voxel grid (MinkowskiEngine's ``SparseTensor``).

    Args:
        features: [V, C] float tensor, one row per coordinate row.
        coordinates: [V, 4] int32 rows (batch, x, y, z) in voxel units (multiples of
            tensor_stride), unique. Leave out to take the map at tensor_stride from
            coordinate_manager.
        tensor_stride: int >= 1, the voxel step of this map.
        coordinate_manager: shares the coordinate / kernel map cache of another
            tensor; a new one is made when None.

    ``.F`` features, ``.C`` coordinates, ``.tensor_stride``, ``.coordinate_manager``.
    """

    def __init__(self, features, coordinates=None, tensor_stride=1, coordinate_manager=None):
        tensor_stride = _positive_int(tensor_stride, "tensor_stride")
        if not isinstance(features, torch.Tensor) or features.dim() != 2:
            raise ValueError(f"features must be a [V, C] tensor, got "
                             f"{tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__}")
        if not features.is_floating_point():
            raise TypeError(f"features must be floating point, got {features.dtype}")
        if coordinate_manager is None:
            if coordinates is None:
                raise ValueError("coordinates are required when no coordinate_manager is given")
            coordinate_manager = CoordinateManager()
        if coordinates is not None:
            self._check_coordinates(coordinates, features, tensor_stride)
            coordinate_manager.insert(coordinates, tensor_stride)
        coords = coordinate_manager.coordinates(tensor_stride)
        if coords.shape[0] != features.shape[0]:
            raise ValueError(f"features has {features.shape[0]} rows but the coordinate map has {coords.shape[0]}")
        self.F = features
        self.C = coords
        self.tensor_stride = tensor_stride
        self.coordinate_manager = coordinate_manager

    @staticmethod
    def _check_coordinates(c, features, tensor_stride):
        if not isinstance(c, torch.Tensor) or c.dim() != 2 or c.shape[1] != 4:
            raise ValueError("coordinates must be a [V, 4] int32 tensor (batch, x, y, z), got "
                             f"{tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__}")
        if c.dtype != torch.int32:
            raise TypeError(f"coordinates must be int32, got {c.dtype}")
        if c.device != features.device:
            raise ValueError(f"coordinates and features must be on the same device, got {c.device} and {features.device}")
        if ops._checks.data_checks_enabled(c) and c.shape[0]:
            if tensor_stride > 1 and bool((c[:, 1:] % tensor_stride != 0).any()):
                raise ValueError(f"coordinates must be multiples of tensor_stride={tensor_stride}")
            if bool((c[:, 0] < 0).any()):
                raise ValueError("coordinates' batch column must be >= 0")
            # sorted unique rows (a lexicographic sort in C++; torch.unique(dim=0) walks rows in Python-speed steps)
            if ops.downsample_coords(c, 1)[0].shape[0] != c.shape[0]:
                raise ValueError("coordinates must be unique rows; merge duplicate points first "
                                 "(sparse_tensor_from_points voxelizes and reduces them)")

    @property
    def device(self):
        return self.F.device

    @property
    def dtype(self):
        return self.F.dtype

    def __len__(self):
        return self.F.shape[0]

    def __repr__(self):
        return (f"SparseTensor(V={self.F.shape[0]}, C={self.F.shape[1]}, tensor_stride={self.tensor_stride}, "
                f"dtype={self.F.dtype}, device={self.F.device})")

    def replace_features(self, features):
        """A tensor on the same map with other features."""
        return SparseTensor(features, tensor_stride=self.tensor_stride, coordinate_manager=self.coordinate_manager)

    def _same_map(self, other, what):
        if not isinstance(other, SparseTensor):
            raise TypeError(f"{what} needs SparseTensors, got {type(other).__name__}")
        if other.coordinate_manager is not self.coordinate_manager or other.tensor_stride != self.tensor_stride:
            raise ValueError(f"{what} needs tensors on the same coordinate map (same coordinate manager and "
                             f"tensor stride), got strides {self.tensor_stride} and {other.tensor_stride}")

    def __add__(self, other):
        self._same_map(other, "adding sparse tensors")
        return self.replace_features(self.F + other.F)

    __iadd__ = __add__  # never in place: autograd may still need the old features


def sparse_cat(*tensors):
    """Concatenates the features of sparse tensors on the same map (ME's ``cat``)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if not tensors:
        raise ValueError("sparse_cat needs at least one SparseTensor")
    for t in tensors[1:]:
        tensors[0]._same_map(t, "sparse_cat")
    return tensors[0].replace_features(torch.cat([t.F for t in tensors], 1))


def sparse_tensor_from_points(points, features, voxel_size, lengths=None, reduce="first"):
    """Voxelizes a ragged batch of clouds into a SparseTensor at tensor stride 1.

    Args:
        points: [B, N, 3] float; features: [B, N, C] float; voxel_size: float > 0;
        lengths: optional [B] valid counts.
        reduce: "first" (each voxel takes the features of its lowest-index point, like
            ME's ``sparse_quantize`` representative) or "mean".

    Returns:
        (SparseTensor with coordinates floor(p / voxel_size) (pcgrasp.ops.voxelize),
        inverse [B * N] int64: each point's voxel row, -1 for padding).
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 3 or features.shape[:2] != points.shape[:2]:
        raise ValueError(f"features must have shape [B, N, C] matching points {tuple(points.shape)}, got "
                         f"{tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__}")
    if reduce not in ("first", "mean"):
        raise ValueError(f"reduce must be 'first' or 'mean', got {reduce!r}")
    coords, inverse, first = ops.voxelize(points, voxel_size, lengths)
    flat = features.reshape(-1, features.shape[-1])
    if reduce == "first":
        feats = flat.index_select(0, first)
    else:
        valid = inverse >= 0
        idx = inverse[valid]
        feats = flat.new_zeros((coords.shape[0], flat.shape[1])).index_add_(0, idx, flat[valid])
        cnt = torch.bincount(idx, minlength=coords.shape[0]).clamp_min(1).to(feats.dtype)
        feats = feats / cnt[:, None]
    return SparseTensor(feats, coords), inverse


def features_at_points(x, inverse):
    """Features of each point's voxel: [len(inverse), C], zeros where inverse is -1."""
    if not isinstance(x, SparseTensor):
        raise TypeError(f"x must be a SparseTensor, got {type(x).__name__}")
    if not isinstance(inverse, torch.Tensor) or inverse.dim() != 1 or inverse.dtype != torch.int64:
        raise ValueError("inverse must be a 1-D int64 tensor (the voxelize inverse map)")
    if ops._checks.data_checks_enabled(inverse) and inverse.numel() and (
            int(inverse.min()) < -1 or int(inverse.max()) >= len(x)):
        raise IndexError(f"inverse must be in [-1, {len(x)}), got values in [{int(inverse.min())}, {int(inverse.max())}]")
    valid = (inverse >= 0).unsqueeze(1)
    return x.F.index_select(0, inverse.clamp_min(0)) * valid.to(x.F.dtype)
