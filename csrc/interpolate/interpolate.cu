#include "interpolate/interpolate.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/fp.h"
#include "gather/gather.h"

namespace pcgrasp {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void interp_kernel(const T* __restrict__ f, const int64_t* __restrict__ ix,
                              const T* __restrict__ w, int64_t M, int64_t N, int64_t C,
                              int64_t total, T* __restrict__ o) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = t % C, row = t / C, b = row / M;
    T acc = T(0);
    for (int j = 0; j < 3; ++j) {
      const int64_t i = ix[row * 3 + j];
      if (i >= 0 && i < N) acc = add_rn(acc, mul_rn(w[row * 3 + j], f[(b * N + i) * C + c]));  // as the CPU: no FMA
    }
    o[t] = acc;
  }
}

// grad_weight[b, m, j] = <grad_out[b, m, :], features[b, idx[b, m, j], :]>
template <typename T>
__global__ void interp_grad_weight_kernel(const T* __restrict__ g, const T* __restrict__ f,
                                          const int64_t* __restrict__ ix, int64_t M, int64_t N,
                                          int64_t C, int64_t total, T* __restrict__ gw) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = t / 3, b = row / M, i = ix[t];
    T acc = T(0);
    if (i >= 0 && i < N)
      for (int64_t c = 0; c < C; ++c) acc = add_rn(acc, mul_rn(g[row * C + c], f[(b * N + i) * C + c]));
    gw[t] = acc;
  }
}

}  // namespace

at::Tensor three_interpolate_cuda(const at::Tensor& features_in, const at::Tensor& idx_in,
                                  const at::Tensor& weight_in) {
  three_interpolate_check_args(features_in, idx_in, weight_in);
  const c10::cuda::CUDAGuard guard(features_in.device());
  const at::Tensor features = to_compute(features_in), idx = idx_in.contiguous();
  const at::Tensor weight = weight_in.to(features.scalar_type()).contiguous();
  const int64_t B = features.size(0), N = features.size(1), C = features.size(2), M = idx.size(1);
  at::Tensor out = at::empty({B, M, C}, features.options());
  const int64_t total = out.numel();
  if (total > 0) {
    AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_cuda", [&] {
      interp_kernel<scalar_t><<<grid_for(total, kThreads), kThreads, 0, current_stream()>>>(
          features.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), weight.data_ptr<scalar_t>(), M,
          N, C, total, out.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return out.to(features_in.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> three_interpolate_backward_cuda(const at::Tensor& grad_in,
                                                                   const at::Tensor& features_in,
                                                                   const at::Tensor& idx_in,
                                                                   const at::Tensor& weight_in) {
  three_interpolate_check_args(features_in, idx_in, weight_in);
  check_same_device(features_in, grad_in, "features", "grad_out");
  const c10::cuda::CUDAGuard guard(features_in.device());
  const at::Tensor features = to_compute(features_in), idx = idx_in.contiguous();
  const at::Tensor weight = weight_in.to(features.scalar_type()).contiguous();
  const at::Tensor grad = grad_in.to(features.scalar_type()).contiguous();
  const int64_t B = features.size(0), N = features.size(1), C = features.size(2), M = idx.size(1);
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == B && grad.size(1) == M && grad.size(2) == C,
              "grad_out must have shape [B, M, C], got ", grad_in.sizes());
  at::Tensor grad_f = at::zeros({B, N, C}, features.options());
  at::Tensor grad_w = at::zeros({B, M, 3}, features.options());
  scatter_add_rows_cuda(grad, idx.view({B, M * 3}), weight.view({B, M * 3}), 3, grad_f);
  const int64_t total = B * M * 3;
  if (total > 0) {
    AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_backward_cuda", [&] {
      interp_grad_weight_kernel<scalar_t><<<grid_for(total, kThreads), kThreads, 0, current_stream()>>>(
          grad.data_ptr<scalar_t>(), features.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), M, N,
          C, total, grad_w.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_f.to(features_in.scalar_type()), grad_w.to(weight_in.scalar_type())};
}

TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) {
  m.impl("three_interpolate", &three_interpolate_cuda);
  m.impl("three_interpolate_backward", &three_interpolate_backward_cuda);
}

}  // namespace pcgrasp
