// Ball query (radius neighbours, at most k per query).
//
//   query [B, M, D], points [B, N, D], query_lengths [B], lengths [B] (int64)
//   radius >= 0: a point is inside when dist2 < radius^2 (radius^2 rounded to
//                the compute dtype)
//   nearest: true  -> the k nearest inside points, sorted by (dist2, index)
//            false -> the first k inside points in index order (pointnet2)
// returns (dist2 [B, M, k] query dtype, idx [B, M, k] int64, count [B, M] int64);
// (the Python API returns them as idx, dist2, count);
// entries past count hold idx -1 and dist2 +inf.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace pcgrasp {

std::tuple<at::Tensor, at::Tensor, at::Tensor> ball_query_cpu(
    const at::Tensor& query, const at::Tensor& points, const at::Tensor& query_lengths,
    const at::Tensor& lengths, double radius, int64_t k, bool nearest);

std::tuple<at::Tensor, at::Tensor, at::Tensor> ball_query_cuda(
    const at::Tensor& query, const at::Tensor& points, const at::Tensor& query_lengths,
    const at::Tensor& lengths, double radius, int64_t k, bool nearest);

}  // namespace pcgrasp
