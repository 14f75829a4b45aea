// Cross-view correspondence search and radius pairs (GraspContrast /
// PointContrast matching), in the world frame given by optional rigid
// transforms, over a sorted-cell-key index of dst (common/cellkeys.h).
//
//   src [B, N, 3], dst [B, M, 3] (same float dtype), src_lengths [B], dst_lengths [B]
//   src_transform, dst_transform: optional [B, 4, 4] row-major rigid transforms
//     (world = R p + t); undefined means identity.
//
// correspondences(...) -> (idx [B, N] int64, dist2 [B, N])
//   the nearest dst point with world dist2 < radius^2 (ties: lower index),
//   else idx -1 and dist2 +inf. Padding src rows: -1 / +inf.
// radius_pairs(..., max_pairs) -> pairs [P, 3] int64 rows (b, i, j)
//   every (src i, dst j) with world dist2 < radius^2, sorted by (b, i, j).
//   max_pairs > 0 keeps, per source, the max_pairs nearest (ties: lower j).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace pcgrasp {

std::tuple<at::Tensor, at::Tensor> correspondences_cpu(
    const at::Tensor& src, const at::Tensor& dst, const at::Tensor& src_lengths,
    const at::Tensor& dst_lengths, const c10::optional<at::Tensor>& src_transform,
    const c10::optional<at::Tensor>& dst_transform, double radius);
std::tuple<at::Tensor, at::Tensor> correspondences_cuda(
    const at::Tensor& src, const at::Tensor& dst, const at::Tensor& src_lengths,
    const at::Tensor& dst_lengths, const c10::optional<at::Tensor>& src_transform,
    const c10::optional<at::Tensor>& dst_transform, double radius);

at::Tensor radius_pairs_cpu(const at::Tensor& src, const at::Tensor& dst,
                            const at::Tensor& src_lengths, const at::Tensor& dst_lengths,
                            const c10::optional<at::Tensor>& src_transform,
                            const c10::optional<at::Tensor>& dst_transform, double radius,
                            int64_t max_pairs);
at::Tensor radius_pairs_cuda(const at::Tensor& src, const at::Tensor& dst,
                             const at::Tensor& src_lengths, const at::Tensor& dst_lengths,
                             const c10::optional<at::Tensor>& src_transform,
                             const c10::optional<at::Tensor>& dst_transform, double radius,
                             int64_t max_pairs);

// Shared argument checks; returns the transforms in the compute dtype,
// contiguous (undefined tensors where none was given).
std::tuple<at::Tensor, at::Tensor> correspondences_check_args(
    const at::Tensor& src, const at::Tensor& dst, const at::Tensor& src_lengths,
    const at::Tensor& dst_lengths, const c10::optional<at::Tensor>& src_transform,
    const c10::optional<at::Tensor>& dst_transform, double radius, at::ScalarType compute);

}  // namespace pcgrasp
