// GraspContrast false-negative mask (Eq. 4): mask[b, i, k] = dist(x_i, x_k) >= gamma,
// i.e. dist2 >= gamma^2 (gamma^2 rounded to the compute dtype); the diagonal is True.
//   xyz [B, M, 3] -> bool [B, M, M]
#pragma once

#include <ATen/ATen.h>

namespace pcgrasp {

at::Tensor false_negative_mask_cpu(const at::Tensor& xyz, double gamma);
at::Tensor false_negative_mask_cuda(const at::Tensor& xyz, double gamma);
void false_negative_mask_check_args(const at::Tensor& xyz, double gamma);

}  // namespace pcgrasp
