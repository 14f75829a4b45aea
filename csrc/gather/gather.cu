#include "gather/gather.h"

#include <ATen/Dispatch.h>
#include <ATen/Context.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda_utils.cuh"

namespace pcgrasp {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void gather_kernel(const T* __restrict__ f, const int64_t* __restrict__ ix, int64_t L,
                              int64_t N, int64_t C, int64_t total, T* __restrict__ o) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = t % C, row = t / C, b = row / L, i = ix[row];
    // out-of-range indices are rejected in Python; here they read as zeros
    o[t] = (i >= 0 && i < N) ? f[(b * N + i) * C + c] : T(0);
  }
}

template <typename T>
__global__ void scatter_add_kernel(const T* __restrict__ g, const int64_t* __restrict__ ix,
                                   const T* __restrict__ w, int64_t L, int64_t R, int64_t N,
                                   int64_t C, int64_t total, T* __restrict__ o) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = t % C, row = t / C, b = row / L, l = row % L, i = ix[row];
    if (i < 0 || i >= N) continue;
    const T wl = w ? w[row] : T(1);
    atomicAdd(o + (b * N + i) * C + c, wl * g[(b * (L / R) + l / R) * C + c]);
  }
}

}  // namespace

at::Tensor gather_points_cuda(const at::Tensor& features_in, const at::Tensor& idx_in) {
  gather_check_args(features_in, idx_in);
  const c10::cuda::CUDAGuard guard(features_in.device());
  const at::Tensor features = features_in.contiguous(), idx = idx_in.contiguous();
  const int64_t B = features.size(0), N = features.size(1), C = features.size(2), L = idx.size(1);
  at::Tensor out = at::empty({B, L, C}, features.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "gather_points_cuda", [&] {
    gather_kernel<scalar_t><<<grid_for(total, kThreads), kThreads, 0, current_stream()>>>(
        features.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), L, N, C, total,
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

void scatter_add_rows_cuda(const at::Tensor& grad, const at::Tensor& idx, const at::Tensor& weight,
                           int64_t R, at::Tensor& out) {
  const int64_t N = out.size(1), C = out.size(2), L = idx.size(1);
  const int64_t total = idx.numel() * C;
  if (total == 0) return;
  // atomicAdd: the order of a row's additions (hence its last bits) varies from run to run, unlike
  // the CPU kernel's. Under torch.use_deterministic_algorithms(True) this raises (or warns).
  at::globalContext().alertNotDeterministic("pcgrasp gather / three_interpolate backward (CUDA scatter-add)");
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "scatter_add_rows_cuda", [&] {
    scatter_add_kernel<scalar_t><<<grid_for(total, kThreads), kThreads, 0, current_stream()>>>(
        grad.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
        weight.defined() ? weight.data_ptr<scalar_t>() : nullptr, L, R, N, C, total,
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

at::Tensor gather_points_backward_cuda(const at::Tensor& grad_in, const at::Tensor& idx_in, int64_t N) {
  gather_backward_check_args(grad_in, idx_in, N);
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = to_compute(grad_in), idx = idx_in.contiguous();
  at::Tensor out = at::zeros({grad.size(0), N, grad.size(2)}, grad.options());
  scatter_add_rows_cuda(grad, idx, at::Tensor(), 1, out);
  return out.to(grad_in.scalar_type());
}

TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) {
  m.impl("gather_points", &gather_points_cuda);
  m.impl("gather_points_backward", &gather_points_backward_cuda);
}

}  // namespace pcgrasp
