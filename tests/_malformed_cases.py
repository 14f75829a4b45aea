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
    "voxel_overflow": (lambda: ops.voxelize(P() * 1e6, 1e-6), "RuntimeError", "overflow"),
    "cyl_rotation_shape": (lambda: ops.cylinder_query(P(), torch.eye(3).expand(2, 10, 3, 3)[:, :5], P(), 0.1, -0.1, 0.1, 4), "ValueError", "rotation"),
    "cyl_rotation_3x4": (lambda: ops.cylinder_query(P(), torch.zeros(2, 10, 3, 4), P(), 0.1, -0.1, 0.1, 4), "ValueError", "rotation"),
    "cyl_hmin_above_hmax": (lambda: ops.cylinder_query(P(), torch.eye(3).expand(2, 10, 3, 3), P(), 0.1, 0.2, 0.1, 4), "ValueError", "hmin"),
    "cyl_negative_radius": (lambda: ops.cylinder_query(P(), torch.eye(3).expand(2, 10, 3, 3), P(), -0.1, -0.1, 0.1, 4), "ValueError", "radius"),
    "seq_wrong_dims": (lambda: ops.nearest_neighbor_order(P(D=2)), "ValueError", "centers"),
    "ragged_mask_shape": (lambda: ops.masked_to_padded(P(), torch.ones(2, 9, dtype=torch.bool)), "ValueError", "mask"),
    "packed_lengths_sum": (lambda: ops.packed_to_padded(torch.rand(7, 3), torch.tensor([3, 3])), "ValueError", "lengths"),
    "raw_nce_mismatch": (lambda: torch.ops.pcgrasp.point_info_nce(torch.rand(1, 4, 3), torch.rand(1, 5, 3), None, None, 0.1, -1.0), "RuntimeError", "same shape"),
    "raw_cyl_rotation": (lambda: torch.ops.pcgrasp.cylinder_query(P(), torch.rand(2, 10, 9), P(), torch.tensor([1, 1]), torch.tensor([1, 1]), 0.1, -0.1, 0.1, 3, False), "RuntimeError", "rotation"),
    # direct calls into the C++ ops: their own checks, never a crash
    "raw_knn_lengths_int32": (lambda: torch.ops.pcgrasp.knn(P(), P(), torch.tensor([1, 2], dtype=torch.int32), torch.tensor([1, 2]), 2), "RuntimeError", "query_lengths"),
    "raw_knn_bad_rank": (lambda: torch.ops.pcgrasp.knn(torch.rand(3), P(), torch.tensor([1, 2]), torch.tensor([1, 2]), 2), "RuntimeError", "query"),
    "raw_fps_start_out_of_range": (lambda: torch.ops.pcgrasp.farthest_point_sample(P(), torch.tensor([10, 10]), torch.tensor([3, 3]), torch.tensor([0, 99]), 3), "RuntimeError", "start"),
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
