// Voxelization with inverse map (MinkowskiEngine sparse_quantize semantics:
// voxel = floor(coordinate / voxel_size), computed in the input's compute dtype).
//
//   points [B, N, 3], lengths [B], voxel_size > 0
// returns
//   coords  [V, 4] int32 rows (batch, x, y, z), unique, sorted lexicographically
//   inverse [B * N] int64: the coords row of every input point (-1 for padding)
//   first   [V] int64: the lowest flat index b * N + i of a point in each voxel
// voxelize_sorted: sort-based (ATen unique on packed int64 keys), the CUDA kernel and the
// CPU kernel's fallback for keys too wide to pack; voxelize_cpu.cpp is the CPU kernel
// (a radix sort of packed keys, same results).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace pcgrasp {

std::tuple<at::Tensor, at::Tensor, at::Tensor> voxelize_sorted(const at::Tensor& points,
                                                               double voxel_size,
                                                               const at::Tensor& lengths);

}  // namespace pcgrasp
