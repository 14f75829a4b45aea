"""Malformed inputs for test_malformed.py. Each case is a function that calls
pcgrasp with bad arguments; it runs in a separate worker process so that a
crash fails its own test instead of killing the test run."""
import torch

from pcgrasp import ops

P = lambda B=2, N=10, D=3: torch.rand(B, N, D)  # noqa: E731


def _nan():
    p = P()
    p[1, 3, 0] = float("nan")
    return p


def _inf():
    p = P()
    p[0, 0, 2] = float("inf")
    return p


def _one(v, dtype=torch.float64):
    """[1, 1, 3] cloud with a single point at (v, 0, 0)."""
    return torch.tensor([[[v, 0.0, 0.0]]], dtype=dtype)


EYE = lambda B=2, M=10: torch.eye(3).expand(B, M, 3, 3)  # noqa: E731
T4 = lambda B=2: torch.eye(4).expand(B, 4, 4)  # noqa: E731


# name -> (callable, expected exception type name, text the message must contain)
CASES = {
    "fps_points_rank2": (lambda: ops.farthest_point_sample(torch.rand(10, 3), 4), "ValueError", "points"),
    "fps_integer_points": (lambda: ops.farthest_point_sample(torch.ones(2, 10, 3, dtype=torch.int64), 4), "TypeError", "points"),
    "fps_too_many_dims": (lambda: ops.farthest_point_sample(P(D=9), 4), "ValueError", "D"),
    "fps_negative_k": (lambda: ops.farthest_point_sample(P(), -1), "ValueError", "k"),
    "fps_float_k": (lambda: ops.farthest_point_sample(P(), 2.5), "TypeError", "k"),
    "fps_k_tensor_wrong_shape": (lambda: ops.farthest_point_sample(P(), torch.tensor([1, 2, 3])), "ValueError", "k"),
    "fps_lengths_wrong_shape": (lambda: ops.farthest_point_sample(P(), 4, lengths=torch.tensor([3])), "ValueError", "lengths"),
    "fps_lengths_float": (lambda: ops.farthest_point_sample(P(), 4, lengths=torch.tensor([3.0, 2.0])), "TypeError", "lengths"),
    "fps_lengths_too_large": (lambda: ops.farthest_point_sample(P(), 4, lengths=torch.tensor([3, 11])), "ValueError", "lengths"),
    "fps_lengths_negative": (lambda: ops.farthest_point_sample(P(), 4, lengths=torch.tensor([-1, 2])), "ValueError", "lengths"),
    "fps_start_out_of_range": (lambda: ops.farthest_point_sample(P(), 4, lengths=torch.tensor([10, 5]), start=torch.tensor([0, 5])), "ValueError", "start"),
    "fps_start_bad_string": (lambda: ops.farthest_point_sample(P(), 4, start="last"), "ValueError", "start"),
    "fps_nan_points": (lambda: ops.farthest_point_sample(_nan(), 4), "ValueError", "non-finite"),
    "fps_not_a_tensor": (lambda: ops.farthest_point_sample([[0.0, 0.0, 0.0]], 1), "TypeError", "points"),
    "knn_mismatched_D": (lambda: ops.knn(P(D=3), P(D=2), 2), "ValueError", "same D"),
    "knn_mismatched_batch": (lambda: ops.knn(P(B=2), P(B=3), 2), "ValueError", "batch"),
    "knn_mismatched_dtype": (lambda: ops.knn(P(), P().double(), 2), "TypeError", "dtype"),
    "knn_query_lengths_shape": (lambda: ops.knn(P(), P(), 2, query_lengths=torch.tensor([[1, 2]])), "ValueError", "query_lengths"),
    "knn_negative_k": (lambda: ops.knn(P(), P(), -3), "ValueError", "k"),
    "knn_inf_points": (lambda: ops.knn(P(), _inf(), 2), "ValueError", "non-finite"),
    "knn_mixed_devices": (lambda: ops.knn(P(), P().to("meta"), 2), "ValueError", "same device"),
    "knn_lengths_other_device": (lambda: ops.knn(P(), P(), 2, lengths=torch.tensor([1, 2], device="meta")), "ValueError", "lengths"),
    "ball_negative_radius": (lambda: ops.ball_query(P(), P(), -0.1, 4), "ValueError", "radius"),
    "ball_nan_radius": (lambda: ops.ball_query(P(), P(), float("nan"), 4), "ValueError", "radius"),
    "ball_bad_order": (lambda: ops.ball_query(P(), P(), 0.1, 4, order="random"), "ValueError", "order"),
    "ball_bad_pad": (lambda: ops.ball_query(P(), P(), 0.1, 4, pad="zero"), "ValueError", "pad"),
    "ball_negative_k": (lambda: ops.ball_query(P(), P(), 0.1, -4), "ValueError", "k"),
    "gather_index_too_large": (lambda: ops.gather_points(P(), torch.tensor([[0, 10], [1, 2]])), "IndexError", "idx"),
    "gather_index_below_minus_one": (lambda: ops.gather_points(P(), torch.tensor([[0, -5], [1, 2]])), "IndexError", "idx"),
    "gather_float_index": (lambda: ops.gather_points(P(), torch.tensor([[0.0, 1.0], [1.0, 2.0]])), "TypeError", "idx"),
    "gather_index_batch_mismatch": (lambda: ops.gather_points(P(), torch.tensor([[0, 1]])), "ValueError", "idx"),
    "gather_features_rank2": (lambda: ops.gather_points(torch.rand(10, 3), torch.tensor([[0, 1]])), "ValueError", "features"),
    "interp_idx_not_three": (lambda: ops.three_interpolate(P(), torch.zeros(2, 4, 2, dtype=torch.int64), torch.rand(2, 4, 2)), "ValueError", "idx"),
    "interp_weight_shape": (lambda: ops.three_interpolate(P(), torch.zeros(2, 4, 3, dtype=torch.int64), torch.rand(2, 5, 3)), "ValueError", "weight"),
    "interp_idx_out_of_range": (lambda: ops.three_interpolate(P(), torch.full((2, 4, 3), 10), torch.rand(2, 4, 3)), "IndexError", "idx"),
    # contrastive / detection ops
    "corr_transform_wrong_shape": (lambda: ops.correspondences(P(), P(), 0.1, src_transform=torch.zeros(2, 3, 4)), "ValueError", "src_transform"),
    "corr_transform_wrong_batch": (lambda: ops.correspondences(P(), P(), 0.1, dst_transform=torch.eye(4).expand(3, 4, 4)), "ValueError", "dst_transform"),
    "corr_transform_non_finite": (lambda: ops.correspondences(P(), P(), 0.1, dst_transform=torch.full((2, 4, 4), float("nan"))), "ValueError", "dst_transform"),
    "corr_negative_radius": (lambda: ops.correspondences(P(), P(), -0.01), "ValueError", "radius"),
    "corr_not_3d": (lambda: ops.correspondences(P(D=2), P(D=2), 0.1), "ValueError", "src"),
    "corr_empty_views_are_fine": (lambda: ops.correspondences(P(N=0), P(N=0), 0.1), "ok", ""),
    "pairs_zero_cap": (lambda: ops.radius_pairs(P(), P(), 0.1, max_pairs=0), "ValueError", "max_pairs"),
    "fnm_negative_gamma": (lambda: ops.false_negative_mask(P(), -0.5), "ValueError", "gamma"),
    "nce_negative_tau": (lambda: ops.point_info_nce(P(D=4), P(D=4), tau=-0.07), "ValueError", "tau"),
    "nce_zero_tau": (lambda: ops.point_info_nce(P(D=4), P(D=4), tau=0.0), "ValueError", "tau"),
    "nce_negative_gamma": (lambda: ops.point_info_nce(P(D=4), P(D=4), P(), gamma=-1.0), "ValueError", "gamma"),
    "nce_m_mismatch": (lambda: ops.point_info_nce(torch.rand(2, 10, 4), torch.rand(2, 9, 4)), "ValueError", "feat_a and feat_b"),
    "nce_gamma_without_xyz": (lambda: ops.point_info_nce(P(D=4), P(D=4), gamma=0.1), "ValueError", "xyz"),
    "nce_valid_not_bool": (lambda: ops.point_info_nce(P(D=4), P(D=4), valid=torch.ones(2, 10)), "TypeError", "valid"),
    "nce_bad_reduction": (lambda: ops.point_info_nce(P(D=4), P(D=4), reduction="max"), "ValueError", "reduction"),
    "voxel_size_zero": (lambda: ops.voxelize(P(), 0.0), "ValueError", "voxel_size"),
    "voxel_size_negative": (lambda: ops.voxelize(P(), -0.005), "ValueError", "voxel_size"),
    "voxel_overflow": (lambda: ops.voxelize(P() * 1e6, 1e-6), "ValueError", "overflow"),
    "cyl_rotation_shape": (lambda: ops.cylinder_query(P(), torch.eye(3).expand(2, 10, 3, 3)[:, :5], P(), 0.1, -0.1, 0.1, 4), "ValueError", "rotation"),
    "cyl_rotation_3x4": (lambda: ops.cylinder_query(P(), torch.zeros(2, 10, 3, 4), P(), 0.1, -0.1, 0.1, 4), "ValueError", "rotation"),
    "cyl_hmin_above_hmax": (lambda: ops.cylinder_query(P(), torch.eye(3).expand(2, 10, 3, 3), P(), 0.1, 0.2, 0.1, 4), "ValueError", "hmin"),
    "cyl_negative_radius": (lambda: ops.cylinder_query(P(), torch.eye(3).expand(2, 10, 3, 3), P(), -0.1, -0.1, 0.1, 4), "ValueError", "radius"),
    "seq_wrong_dims": (lambda: ops.nearest_neighbor_order(P(D=2)), "ValueError", "centers"),
    "ragged_mask_shape": (lambda: ops.masked_to_padded(P(), torch.ones(2, 9, dtype=torch.bool)), "ValueError", "mask"),
    "packed_lengths_sum": (lambda: ops.packed_to_padded(torch.rand(7, 3), torch.tensor([3, 3])), "ValueError", "lengths"),
    # --- issue 7: contrastive / detection ops ---
    "corr_src_rank2": (lambda: ops.correspondences(torch.rand(10, 3), P(), 0.1), "ValueError", "src must"),
    "corr_dst_rank4": (lambda: ops.correspondences(P(), torch.rand(2, 10, 3, 1), 0.1), "ValueError", "dst must"),
    "corr_batch_mismatch": (lambda: ops.correspondences(P(B=2), P(B=3), 0.1), "ValueError", "src and dst must have the same batch"),
    "corr_dtype_mismatch": (lambda: ops.correspondences(P(), P().double(), 0.1), "TypeError", "src and dst must have the same dtype"),
    "corr_bool_points": (lambda: ops.correspondences(P() > 0.5, P(), 0.1), "TypeError", "src must"),
    "corr_nan_radius": (lambda: ops.correspondences(P(), P(), float("nan")), "ValueError", "radius must"),
    "corr_string_radius": (lambda: ops.correspondences(P(), P(), "0.1"), "TypeError", "radius must"),
    "corr_src_lengths_too_large": (lambda: ops.correspondences(P(), P(), 0.1, src_lengths=torch.tensor([11, 3])), "ValueError", "src_lengths must"),
    "corr_dst_lengths_wrong_shape": (lambda: ops.correspondences(P(), P(), 0.1, dst_lengths=torch.tensor([[1, 2]])), "ValueError", "dst_lengths must"),
    "corr_src_lengths_float": (lambda: ops.correspondences(P(), P(), 0.1, src_lengths=torch.tensor([1.0, 2.0])), "TypeError", "src_lengths must"),
    "corr_transform_integer": (lambda: ops.correspondences(P(), P(), 0.1, src_transform=torch.eye(4, dtype=torch.int64).expand(2, 4, 4)), "TypeError", "src_transform must"),
    "corr_transform_inf": (lambda: ops.correspondences(P(), P(), 0.1, src_transform=T4().clone().index_fill_(2, torch.tensor([3]), float("inf"))), "ValueError", "src_transform contains"),
    "corr_transform_rank2": (lambda: ops.correspondences(P(), P(), 0.1, dst_transform=torch.eye(4)), "ValueError", "dst_transform must"),
    "corr_transform_other_device": (lambda: ops.correspondences(P(), P(), 0.1, dst_transform=T4().to("meta")), "ValueError", "dst_transform and its points must"),
    "pairs_negative_cap": (lambda: ops.radius_pairs(P(), P(), 0.1, max_pairs=-2), "ValueError", "max_pairs must"),
    "pairs_float_cap": (lambda: ops.radius_pairs(P(), P(), 0.1, max_pairs=2.5), "TypeError", "max_pairs must"),
    "pairs_bool_cap": (lambda: ops.radius_pairs(P(), P(), 0.1, max_pairs=True), "TypeError", "max_pairs must"),
    "pairs_nan_radius": (lambda: ops.radius_pairs(P(), P(), float("nan")), "ValueError", "radius must"),
    "pairs_negative_radius": (lambda: ops.radius_pairs(P(), P(), -1.0), "ValueError", "radius must"),
    "pairs_transform_4x3": (lambda: ops.radius_pairs(P(), P(), 0.1, src_transform=torch.zeros(2, 4, 3)), "ValueError", "src_transform must"),
    "pairs_dst_lengths_negative": (lambda: ops.radius_pairs(P(), P(), 0.1, dst_lengths=torch.tensor([-1, 4])), "ValueError", "dst_lengths must"),
    "pairs_nan_points": (lambda: ops.radius_pairs(P(), _nan(), 0.1), "ValueError", "dst contains"),
    "fnm_nan_gamma": (lambda: ops.false_negative_mask(P(), float("nan")), "ValueError", "gamma must"),
    "fnm_inf_gamma": (lambda: ops.false_negative_mask(P(), float("inf")), "ValueError", "gamma must"),
    "fnm_string_gamma": (lambda: ops.false_negative_mask(P(), "0.1"), "TypeError", "gamma must"),
    "fnm_xyz_2d": (lambda: ops.false_negative_mask(P(D=2), 0.1), "ValueError", "xyz must"),
    "fnm_xyz_rank2": (lambda: ops.false_negative_mask(torch.rand(10, 3), 0.1), "ValueError", "xyz must"),
    "fnm_integer_xyz": (lambda: ops.false_negative_mask(torch.ones(2, 10, 3, dtype=torch.int32), 0.1), "TypeError", "xyz must"),
    "fnm_nan_xyz": (lambda: ops.false_negative_mask(_nan(), 0.1), "ValueError", "xyz contains"),
    "nce_nan_tau": (lambda: ops.point_info_nce(P(D=4), P(D=4), tau=float("nan")), "ValueError", "tau must"),
    "nce_inf_tau": (lambda: ops.point_info_nce(P(D=4), P(D=4), tau=float("inf")), "ValueError", "tau must"),
    "nce_bool_tau": (lambda: ops.point_info_nce(P(D=4), P(D=4), tau=True), "TypeError", "tau must"),
    "nce_subnormal_tau": (lambda: ops.point_info_nce(P(D=4), P(D=4), tau=1e-39), "ValueError", "tau must be at least"),
    "nce_subnormal_tau_float64": (lambda: ops.point_info_nce(P(D=4).double(), P(D=4).double(), tau=1e-310), "ValueError", "tau must be at least"),
    "nce_smallest_normal_tau_is_fine": (lambda: ops.point_info_nce(P(D=4).double(), P(D=4).double(), tau=2.3e-308), "ok", ""),
    "nce_nan_gamma": (lambda: ops.point_info_nce(P(D=4), P(D=4), P(), gamma=float("nan")), "ValueError", "gamma must"),
    "nce_feat_rank2": (lambda: ops.point_info_nce(torch.rand(10, 4), torch.rand(10, 4)), "ValueError", "feat_a must"),
    "nce_dtype_mismatch": (lambda: ops.point_info_nce(P(D=4), P(D=4).double()), "TypeError", "feat_a and feat_b must have the same dtype"),
    "nce_integer_features": (lambda: ops.point_info_nce(torch.ones(2, 10, 4, dtype=torch.int64), torch.ones(2, 10, 4, dtype=torch.int64)), "TypeError", "feat_a must"),
    "nce_xyz_2d": (lambda: ops.point_info_nce(P(D=4), P(D=4), P(D=2), gamma=0.1), "ValueError", "xyz must"),
    "nce_xyz_batch_mismatch": (lambda: ops.point_info_nce(P(D=4), P(D=4), P(B=3), gamma=0.1), "ValueError", "xyz must"),
    "nce_xyz_nan": (lambda: ops.point_info_nce(P(D=4), P(D=4), _nan(), gamma=0.1), "ValueError", "xyz contains"),
    "nce_valid_wrong_shape": (lambda: ops.point_info_nce(P(D=4), P(D=4), valid=torch.ones(2, 9, dtype=torch.bool)), "ValueError", "valid must"),
    "nce_valid_other_device": (lambda: ops.point_info_nce(P(D=4), P(D=4), valid=torch.ones(2, 10, dtype=torch.bool, device="meta")), "ValueError", "valid and feat_a must"),
    "voxel_nan_size": (lambda: ops.voxelize(P(), float("nan")), "ValueError", "voxel_size must"),
    "voxel_inf_size": (lambda: ops.voxelize(P(), float("inf")), "ValueError", "voxel_size must"),
    "voxel_bool_size": (lambda: ops.voxelize(P(), True), "TypeError", "voxel_size must"),
    "voxel_points_2d": (lambda: ops.voxelize(P(D=2), 0.1), "ValueError", "points must"),
    "voxel_points_rank2": (lambda: ops.voxelize(torch.rand(10, 3), 0.1), "ValueError", "points must"),
    "voxel_integer_points": (lambda: ops.voxelize(torch.ones(2, 10, 3, dtype=torch.int64), 0.1), "TypeError", "points must"),
    "voxel_lengths_too_large": (lambda: ops.voxelize(P(), 0.1, lengths=torch.tensor([3, 11])), "ValueError", "lengths must"),
    "voxel_inf_points": (lambda: ops.voxelize(_inf(), 0.1), "ValueError", "points contains"),
    "voxel_overflow_negative": (lambda: ops.voxelize(-P() - 1.0, 1e-10), "ValueError", "voxel coordinates overflow int32"),
    # the int32 range boundaries, in float64 where they are exact
    "voxel_int32_max_ok": (lambda: ops.voxelize(_one(2.0**31 - 0.5), 1.0), "ok", ""),
    "voxel_int32_max_plus_one": (lambda: ops.voxelize(_one(2.0**31), 1.0), "ValueError", "voxel coordinates overflow int32"),
    "voxel_int32_min_ok": (lambda: ops.voxelize(_one(-(2.0**31)), 1.0), "ok", ""),
    "voxel_int32_min_minus_one": (lambda: ops.voxelize(_one(-(2.0**31) - 0.5), 1.0), "ValueError", "voxel coordinates overflow int32"),
    "voxel_overflow_only_in_padding_is_fine": (lambda: ops.voxelize(torch.cat([_one(0.5), _one(1e12)], 1), 1.0, lengths=torch.tensor([1])), "ok", ""),
    "cyl_nan_radius": (lambda: ops.cylinder_query(P(), EYE(), P(), float("nan"), -0.1, 0.1, 4), "ValueError", "radius must"),
    "cyl_nan_hmin": (lambda: ops.cylinder_query(P(), EYE(), P(), 0.1, float("nan"), 0.1, 4), "ValueError", "hmin must"),
    "cyl_inf_hmax": (lambda: ops.cylinder_query(P(), EYE(), P(), 0.1, -0.1, float("inf"), 4), "ValueError", "hmax must"),
    "cyl_rotation_nan": (lambda: ops.cylinder_query(P(), torch.full((2, 10, 3, 3), float("nan")), P(), 0.1, -0.1, 0.1, 4), "ValueError", "rotation contains"),
    "cyl_rotation_integer": (lambda: ops.cylinder_query(P(), torch.eye(3, dtype=torch.int64).expand(2, 10, 3, 3), P(), 0.1, -0.1, 0.1, 4), "TypeError", "rotation must"),
    "cyl_rotation_other_device": (lambda: ops.cylinder_query(P(), EYE().to("meta"), P(), 0.1, -0.1, 0.1, 4), "ValueError", "rotation and query must"),
    "cyl_query_2d": (lambda: ops.cylinder_query(P(D=2), EYE(), P(D=2), 0.1, -0.1, 0.1, 4), "ValueError", "query and points must have D = 3"),
    "cyl_batch_mismatch": (lambda: ops.cylinder_query(P(), EYE(), P(B=3), 0.1, -0.1, 0.1, 4), "ValueError", "query and points must have the same batch"),
    "cyl_dtype_mismatch": (lambda: ops.cylinder_query(P(), EYE(), P().double(), 0.1, -0.1, 0.1, 4), "TypeError", "query and points must have the same dtype"),
    "cyl_float_k": (lambda: ops.cylinder_query(P(), EYE(), P(), 0.1, -0.1, 0.1, 4.0), "TypeError", "k must"),
    "cyl_negative_k": (lambda: ops.cylinder_query(P(), EYE(), P(), 0.1, -0.1, 0.1, -1), "ValueError", "k must"),
    "cyl_bad_order": (lambda: ops.cylinder_query(P(), EYE(), P(), 0.1, -0.1, 0.1, 4, order="random"), "ValueError", "order must"),
    "cyl_bad_pad": (lambda: ops.cylinder_query(P(), EYE(), P(), 0.1, -0.1, 0.1, 4, pad="zero"), "ValueError", "pad must"),
    "cyl_query_lengths_too_large": (lambda: ops.cylinder_query(P(), EYE(), P(), 0.1, -0.1, 0.1, 4, query_lengths=torch.tensor([11, 0])), "ValueError", "query_lengths must"),
    "cyl_string_hmin": (lambda: ops.cylinder_query(P(), EYE(), P(), 0.1, "a", 0.1, 4), "TypeError", "hmin must"),
    "seq_rank2": (lambda: ops.nearest_neighbor_order(torch.rand(10, 3)), "ValueError", "centers must"),
    "seq_integer_centers": (lambda: ops.nearest_neighbor_order(torch.ones(2, 10, 3, dtype=torch.int64)), "TypeError", "centers must"),
    "seq_nan_centers": (lambda: ops.nearest_neighbor_order(_nan()), "ValueError", "centers contains"),
    "seq_bad_start": (lambda: ops.nearest_neighbor_order(P(), start="random"), "ValueError", "start must"),
    "seq_lengths_too_large": (lambda: ops.nearest_neighbor_order(P(), lengths=torch.tensor([10, 11])), "ValueError", "lengths must"),
    "seq_lengths_float": (lambda: ops.nearest_neighbor_order(P(), lengths=torch.tensor([1.0, 2.0])), "TypeError", "lengths must"),
    "ragged_mask_not_bool": (lambda: ops.masked_to_padded(P(), torch.ones(2, 10)), "ValueError", "mask must"),
    "ragged_x_rank1": (lambda: ops.masked_to_padded(torch.rand(10), torch.ones(10, dtype=torch.bool)), "ValueError", "x must"),
    "ragged_x_not_a_tensor": (lambda: ops.masked_to_padded([[1.0]], torch.ones(1, 1, dtype=torch.bool)), "TypeError", "x must"),
    "ragged_mask_other_device": (lambda: ops.masked_to_padded(P(), torch.ones(2, 10, dtype=torch.bool, device="meta")), "ValueError", "x and mask must"),
    "padded_to_packed_x_rank1": (lambda: ops.padded_to_packed(torch.rand(10), torch.tensor([3])), "ValueError", "x must"),
    "padded_to_packed_lengths_too_large": (lambda: ops.padded_to_packed(P(), torch.tensor([3, 11])), "ValueError", "lengths must"),
    "padded_to_packed_lengths_negative": (lambda: ops.padded_to_packed(P(), torch.tensor([-1, 3])), "ValueError", "lengths must"),
    "padded_to_packed_lengths_float": (lambda: ops.padded_to_packed(P(), torch.tensor([1.0, 3.0])), "TypeError", "lengths must"),
    "packed_lengths_negative": (lambda: ops.packed_to_padded(torch.rand(3, 3), torch.tensor([5, -2])), "ValueError", "lengths must"),
    "packed_lengths_float": (lambda: ops.packed_to_padded(torch.rand(3, 3), torch.tensor([1.0, 2.0])), "ValueError", "lengths must"),
    "packed_lengths_rank2": (lambda: ops.packed_to_padded(torch.rand(3, 3), torch.tensor([[1, 2]])), "ValueError", "lengths must"),
    "packed_x_rank0": (lambda: ops.packed_to_padded(torch.tensor(1.0), torch.tensor([1])), "ValueError", "x must"),
    "packed_max_len_too_small": (lambda: ops.packed_to_padded(torch.rand(5, 3), torch.tensor([4, 1]), max_len=3), "ValueError", "max_len=3 is smaller than the longest item"),
    "packed_max_len_float": (lambda: ops.packed_to_padded(torch.rand(5, 3), torch.tensor([4, 1]), max_len=4.5), "TypeError", "max_len must"),
    "packed_max_len_negative": (lambda: ops.packed_to_padded(torch.rand(0, 3), torch.tensor([0, 0]), max_len=-1), "ValueError", "max_len must"),
    "raw_nce_mismatch": (lambda: torch.ops.pcgrasp.point_info_nce(torch.rand(1, 4, 3), torch.rand(1, 5, 3), None, None, 0.1, -1.0), "RuntimeError", "same shape"),
    "raw_cyl_rotation": (lambda: torch.ops.pcgrasp.cylinder_query(P(), torch.rand(2, 10, 9), P(), torch.tensor([1, 1]), torch.tensor([1, 1]), 0.1, -0.1, 0.1, 3, False), "RuntimeError", "rotation"),
    # direct calls into the C++ ops: their own checks, never a crash
    "raw_knn_lengths_int32": (lambda: torch.ops.pcgrasp.knn(P(), P(), torch.tensor([1, 2], dtype=torch.int32), torch.tensor([1, 2]), 2), "RuntimeError", "query_lengths"),
    "raw_knn_bad_rank": (lambda: torch.ops.pcgrasp.knn(torch.rand(3), P(), torch.tensor([1, 2]), torch.tensor([1, 2]), 2), "RuntimeError", "query"),
    "raw_fps_start_out_of_range": (lambda: torch.ops.pcgrasp.farthest_point_sample(P(), torch.tensor([10, 10]), torch.tensor([3, 3]), torch.tensor([0, 99]), 3), "ValueError", "start"),
    "raw_interp_index_out_of_range": (lambda: torch.ops.pcgrasp.three_interpolate(P(), torch.full((2, 4, 3), 99), torch.rand(2, 4, 3)), "RuntimeError", "idx"),
    # lengths beyond N reach the kernels only through the raw op: clamped, no out-of-range read
    "raw_knn_lengths_beyond_n_are_clamped": (lambda: torch.ops.pcgrasp.knn(P(), P(), torch.tensor([99, -4]), torch.tensor([99, 5]), 2), "ok", ""),
    "raw_ball_lengths_beyond_n_are_clamped": (lambda: torch.ops.pcgrasp.ball_query(P(), P(), torch.tensor([99, 2]), torch.tensor([-7, 99]), 0.5, 3, False), "ok", ""),
}


def run_case(name):
    fn = CASES[name][0]
    try:
        fn()
    except Exception as e:  # report type and message to the parent
        return type(e).__name__, str(e)
    return "ok", ""
