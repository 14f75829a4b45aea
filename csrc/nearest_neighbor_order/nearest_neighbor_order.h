// Point-JEPA patch sequencer: start at the centre with the smallest x+y+z
// (summed left to right, rounded per operation), then repeatedly move to the
// nearest unvisited centre; ties go to the lower index everywhere.
//   centers [B, G, 3], lengths [B] -> order [B, G] int64 (padding rows end in -1)
#pragma once

#include <ATen/ATen.h>

namespace pcgrasp {

at::Tensor nearest_neighbor_order_cpu(const at::Tensor& centers, const at::Tensor& lengths);
at::Tensor nearest_neighbor_order_cuda(const at::Tensor& centers, const at::Tensor& lengths);
void nearest_neighbor_order_check_args(const at::Tensor& centers, const at::Tensor& lengths);

}  // namespace pcgrasp
