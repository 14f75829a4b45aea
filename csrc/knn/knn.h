// k nearest neighbours.
//
//   query         [B, M, D]  points        [B, N, D]   (same float dtype)
//   query_lengths [B] int64  lengths       [B] int64
//   k             >= 0
// returns (dist2 [B, M, k] in the query dtype, idx [B, M, k] int64), sorted by
// (squared distance, index): ties go to the lower index. Rows past a cloud's
// valid points, and padding queries, hold idx -1 and dist2 +inf.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace pcgrasp {

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& query, const at::Tensor& points,
                                           const at::Tensor& query_lengths,
                                           const at::Tensor& lengths, int64_t k);

std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& query, const at::Tensor& points,
                                            const at::Tensor& query_lengths,
                                            const at::Tensor& lengths, int64_t k);

// Shared argument checks for both devices.
void knn_check_args(const at::Tensor& query, const at::Tensor& points,
                    const at::Tensor& query_lengths, const at::Tensor& lengths, int64_t k);

}  // namespace pcgrasp
