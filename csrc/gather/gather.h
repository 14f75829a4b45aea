// Gather of channels-last features by per-cloud indices, and the row
// scatter-add that serves as its backward (also used by three_interpolate).
//
//   gather_points(features [B, N, C], idx [B, L] int64) -> [B, L, C]
//     idx -1 gives a zero row; any other index outside [0, N) is an error.
//   gather_points_backward(grad [B, L, C], idx [B, L], N) -> [B, N, C]
//     rows with repeated indices accumulate; -1 rows are dropped.
#pragma once

#include <ATen/ATen.h>

namespace pcgrasp {

at::Tensor gather_points_cpu(const at::Tensor& features, const at::Tensor& idx);
at::Tensor gather_points_backward_cpu(const at::Tensor& grad, const at::Tensor& idx, int64_t N);
at::Tensor gather_points_cuda(const at::Tensor& features, const at::Tensor& idx);
at::Tensor gather_points_backward_cuda(const at::Tensor& grad, const at::Tensor& idx, int64_t N);

// out[b, idx[b, l], :] += w[b, l] * grad[b, l / R, :] for idx >= 0 (w = 1 when
// weight is undefined). grad: [B, L / R, C] in the compute dtype; out: [B, N, C].
void scatter_add_rows_cpu(const at::Tensor& grad, const at::Tensor& idx, const at::Tensor& weight,
                          int64_t R, at::Tensor& out);
void scatter_add_rows_cuda(const at::Tensor& grad, const at::Tensor& idx, const at::Tensor& weight,
                           int64_t R, at::Tensor& out);

void gather_check_args(const at::Tensor& features, const at::Tensor& idx);
void gather_backward_check_args(const at::Tensor& grad, const at::Tensor& idx, int64_t N);
void check_index_range(const at::Tensor& idx, int64_t N, const char* name);

}  // namespace pcgrasp
