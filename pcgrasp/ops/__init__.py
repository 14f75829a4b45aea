"""pcgrasp.ops: point-cloud kernels registered with torch.library.

Every op dispatches to a CPU or CUDA kernel by the device of its inputs, has
a fake kernel for torch.compile, and autograd where it is differentiable.
"""
from ._checks import data_checks, set_data_checks
from .ball_query import ball_query
from .fps import farthest_point_sample
from .gather import gather_points, scatter_add_points
from .interpolate import inverse_distance_weights, three_interpolate
from .kernel_map import downsample_coords, kernel_map, kernel_offsets
from .knn import knn, three_nn
from .correspondences import correspondences, radius_pairs
from .cylinder_query import cylinder_query
from .false_negative_mask import false_negative_mask
from .point_info_nce import point_info_nce
from .ragged import masked_to_padded, packed_to_padded, padded_to_packed
from .sequencer import nearest_neighbor_order
from .sparse_conv import sparse_conv_pairs, sparse_conv_weight_grad, transpose_kernel_map
from .transfer import host_to_device
from .voxelize import voxelize

__all__ = [
    "farthest_point_sample",
    "knn",
    "three_nn",
    "ball_query",
    "gather_points",
    "scatter_add_points",
    "three_interpolate",
    "inverse_distance_weights",
    "set_data_checks",
    "data_checks",
    "correspondences",
    "radius_pairs",
    "false_negative_mask",
    "point_info_nce",
    "voxelize",
    "cylinder_query",
    "nearest_neighbor_order",
    "kernel_map",
    "kernel_offsets",
    "downsample_coords",
    "sparse_conv_pairs",
    "sparse_conv_weight_grad",
    "transpose_kernel_map",
    "masked_to_padded",
    "padded_to_packed",
    "packed_to_padded",
    "host_to_device",
]
