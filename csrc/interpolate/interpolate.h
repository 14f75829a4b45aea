// PointNet++ feature propagation: weighted sum of three neighbours' features.
//
//   three_interpolate(features [B, N, C], idx [B, M, 3] int64, weight [B, M, 3])
//     -> out [B, M, C] = sum_j weight[b, m, j] * features[b, idx[b, m, j], :]
//   Neighbours with idx -1 contribute nothing (clouds with fewer than 3 points).
//   three_interpolate_backward(grad_out [B, M, C], features, idx, weight)
//     -> (grad_features [B, N, C], grad_weight [B, M, 3])
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace pcgrasp {

at::Tensor three_interpolate_cpu(const at::Tensor& features, const at::Tensor& idx,
                                 const at::Tensor& weight);
std::tuple<at::Tensor, at::Tensor> three_interpolate_backward_cpu(const at::Tensor& grad_out,
                                                                  const at::Tensor& features,
                                                                  const at::Tensor& idx,
                                                                  const at::Tensor& weight);
at::Tensor three_interpolate_cuda(const at::Tensor& features, const at::Tensor& idx,
                                  const at::Tensor& weight);
std::tuple<at::Tensor, at::Tensor> three_interpolate_backward_cuda(const at::Tensor& grad_out,
                                                                   const at::Tensor& features,
                                                                   const at::Tensor& idx,
                                                                   const at::Tensor& weight);

void three_interpolate_check_args(const at::Tensor& features, const at::Tensor& idx,
                                  const at::Tensor& weight);

}  // namespace pcgrasp
