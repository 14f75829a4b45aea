#include "false_negative_mask/false_negative_mask.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/fp.h"

namespace pcgrasp {

void false_negative_mask_check_args(const at::Tensor& xyz, double gamma) {
  check_cloud(xyz, "xyz");
  TORCH_CHECK(xyz.size(2) == 3, "xyz must have shape [B, M, 3], got ", xyz.sizes());
  TORCH_CHECK(gamma >= 0, "gamma must be non-negative, got ", gamma);
}

at::Tensor false_negative_mask_cpu(const at::Tensor& xyz_in, double gamma) {
  false_negative_mask_check_args(xyz_in, gamma);
  const at::Tensor xyz = to_compute(xyz_in);
  const int64_t B = xyz.size(0), M = xyz.size(1);
  at::Tensor out = at::empty({B, M, M}, xyz.options().dtype(at::kBool));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "false_negative_mask_cpu", [&] {
    const scalar_t* X = xyz.data_ptr<scalar_t>();
    const scalar_t g2 = static_cast<scalar_t>(gamma * gamma);
    bool* o = out.data_ptr<bool>();
    at::parallel_for(0, B * M, 16, [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const int64_t b = t / M, i = t % M;
        const scalar_t* xi = X + t * 3;
        const scalar_t* xb = X + b * M * 3;
        bool* row = o + t * M;
        for (int64_t k = 0; k < M; ++k) row[k] = k == i || !(dist2_rn(xb + k * 3, xi, int64_t(3)) < g2);
      }
    });
  });
  return out;
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) { m.impl("false_negative_mask", &false_negative_mask_cpu); }

}  // namespace pcgrasp
