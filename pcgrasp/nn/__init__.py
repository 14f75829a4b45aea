"""pcgrasp.nn: sparse voxel layers on pcgrasp.ops (MinkowskiEngine 0.5.4 compatible weights).

Layers: ops <- nn <- models. See the Sparse backbone page of the docs (docs/sparse.md).
"""
from .functional import KernelMap, sparse_conv, sparse_conv_reference
from .modules import SparseBatchNorm, SparseConv3d, SparseConvTranspose3d, SparseReLU
from .sparse_tensor import (CoordinateManager, SparseTensor, features_at_points, sparse_cat,
                            sparse_tensor_from_points)
from .sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm, sync_batch_norm

__all__ = [
    "SparseTensor",
    "CoordinateManager",
    "SparseConv3d",
    "SparseConvTranspose3d",
    "SparseBatchNorm",
    "SparseReLU",
    "sparse_cat",
    "sparse_conv",
    "sparse_conv_reference",
    "KernelMap",
    "sparse_tensor_from_points",
    "features_at_points",
    "SyncBatchNorm",
    "sync_batch_norm",
    "convert_sync_batchnorm",
]
