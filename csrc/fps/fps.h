// Farthest point sampling.
//
//   points  [B, N, D] float/double (half types are upcast by the caller)
//   lengths [B] int64  valid points per cloud (prefix of each row)
//   counts  [B] int64  samples wanted per cloud (<= K)
//   start   [B] int64  first index per cloud, in [0, lengths[b]) when lengths[b] > 0 (checked on
//                      both devices: an index outside raises); None: index 0
//   K       output width
// returns idx [B, K] int64: min(counts[b], lengths[b]) distinct indices, then -1.
//
// Each step picks the unselected point whose distance to the selected set is
// largest; ties go to the lowest index. Distances use dist2_rn (common/fp.h)
// so the CPU and CUDA kernels return identical indices. The CPU kernel has two
// exact paths, chosen per cloud by size (fps_cpu.cpp): every point each step,
// or a tree of leaf buckets that skips those the new centre cannot change.
#pragma once

#include <ATen/ATen.h>

namespace pcgrasp {

at::Tensor farthest_point_sample_cpu(const at::Tensor& points, const at::Tensor& lengths,
                                     const at::Tensor& counts, const c10::optional<at::Tensor>& start,
                                     int64_t K);

at::Tensor farthest_point_sample_cuda(const at::Tensor& points, const at::Tensor& lengths,
                                      const at::Tensor& counts, const c10::optional<at::Tensor>& start,
                                      int64_t K);

// Raises unless every start[b] lies in [0, n_b) for the clouds with n_b > 0
// (one device sync on CUDA; only for a start the caller gave).
void fps_check_start(const at::Tensor& start, const at::Tensor& lengths, int64_t N);

}  // namespace pcgrasp
