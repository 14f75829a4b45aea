// Input checks and dtype helpers shared by every op's C++ entry point.
// The Python wrappers in pcgrasp/ops validate arguments first and raise
// exceptions that name them; these TORCH_CHECKs are the second line, so that a
// direct torch.ops.pcgrasp.* call can never read out of bounds.
#pragma once

#include <ATen/ATen.h>

#include "common/fp.h"

namespace pcgrasp {

inline void check_cloud(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 3, name, " must have shape [B, N, D], got ", t.sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name, " must be floating point, got ",
              t.scalar_type());
}

inline void check_lengths(const at::Tensor& lengths, int64_t B, const char* name) {
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == B, name, " must have shape [", B,
              "], got ", lengths.sizes());
  TORCH_CHECK(lengths.scalar_type() == at::kLong, name, " must be int64, got ",
              lengths.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* an,
                              const char* bn) {
  TORCH_CHECK(a.device() == b.device(), an, " and ", bn, " must be on the same device, got ",
              a.device(), " and ", b.device());
}

// Half types are computed in float32: returns the dtype the kernels run in.
inline at::ScalarType compute_dtype(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

inline at::Tensor to_compute(const at::Tensor& t) {
  return t.to(compute_dtype(t.scalar_type())).contiguous();
}

}  // namespace pcgrasp
