#include "false_negative_mask/false_negative_mask.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/fp.h"

namespace pcgrasp {
namespace {

template <typename T>
__global__ void fnm_kernel(const T* __restrict__ X, int64_t M, int64_t total, T g2, bool* __restrict__ o) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = t % M, row = t / M, i = row % M, b = row / M;
    o[t] = k == i || !(dist2_rn(X + (b * M + k) * 3, X + row * 3, int64_t(3)) < g2);
  }
}

}  // namespace

at::Tensor false_negative_mask_cuda(const at::Tensor& xyz_in, double gamma) {
  false_negative_mask_check_args(xyz_in, gamma);
  const c10::cuda::CUDAGuard guard(xyz_in.device());
  const at::Tensor xyz = to_compute(xyz_in);
  const int64_t B = xyz.size(0), M = xyz.size(1);
  at::Tensor out = at::empty({B, M, M}, xyz.options().dtype(at::kBool));
  const int64_t total = out.numel();
  if (total == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "false_negative_mask_cuda", [&] {
    fnm_kernel<scalar_t><<<grid_for(total, 256), 256, 0, current_stream()>>>(
        xyz.data_ptr<scalar_t>(), M, total, static_cast<scalar_t>(gamma * gamma), out.data_ptr<bool>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) { m.impl("false_negative_mask", &false_negative_mask_cuda); }

}  // namespace pcgrasp
