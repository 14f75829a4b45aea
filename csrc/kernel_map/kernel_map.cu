#include "kernel_map/kernel_map.h"

#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda_utils.cuh"

namespace pcgrasp {
namespace {

constexpr int kThreads = 256;

// Pass 1 (count != nullptr): the number of input rows matching each query t = k * M + o.
// Pass 2: writes them at [start[t], start[t] + count).
__global__ void kernel_map_kernel(const int32_t* __restrict__ S, const int64_t* __restrict__ perm,
                                  const int32_t* __restrict__ O, const int64_t* __restrict__ off,
                                  int64_t N, int64_t M, int64_t T, int64_t* __restrict__ count,
                                  const int64_t* __restrict__ start, int64_t* __restrict__ in_idx,
                                  int64_t* __restrict__ out_idx) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < T;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = t / M, o = t % M;
    int64_t q[4], s = 0, e = 0;
    if (shifted_row(O + o * 4, off + k * 3, q)) equal_range_row(S, N, q, s, e);
    if (count) {
      count[t] = e - s;
    } else {
      int64_t w = start[t];
      for (int64_t p = s; p < e; ++p, ++w) {
        in_idx[w] = perm[p];
        out_idx[w] = o;
      }
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> kernel_map_cuda(const at::Tensor& in_coords,
                                                               const at::Tensor& out_coords,
                                                               at::IntArrayRef kernel_size,
                                                               at::IntArrayRef dilation,
                                                               at::IntArrayRef tensor_stride) {
  kernel_map_check_args(in_coords, out_coords, kernel_size, dilation, tensor_stride);
  const c10::cuda::CUDAGuard guard(in_coords.device());
  const std::vector<int64_t> off_h = kernel_offsets(kernel_size, dilation, tensor_stride);
  const int64_t K = static_cast<int64_t>(off_h.size()) / 3, N = in_coords.size(0), M = out_coords.size(0);
  const auto lopt = in_coords.options().dtype(at::kLong);
  const int64_t T = K * M;
  if (T == 0 || N == 0)
    return {at::empty({0}, lopt), at::empty({0}, lopt), at::zeros({K}, lopt)};
  const at::Tensor off = at::tensor(off_h, at::TensorOptions().dtype(at::kLong)).to(in_coords.device());
  const at::Tensor perm = lexsort_rows(in_coords).contiguous();
  const at::Tensor sorted = in_coords.index_select(0, perm).contiguous();
  const at::Tensor out = out_coords.contiguous();
  at::Tensor count = at::empty({T}, lopt);
  auto pass = [&](int64_t* cnt, const int64_t* start, int64_t* ii, int64_t* oi) {
    kernel_map_kernel<<<grid_for(T, kThreads), kThreads, 0, current_stream()>>>(
        sorted.data_ptr<int32_t>(), perm.data_ptr<int64_t>(), out.data_ptr<int32_t>(),
        off.data_ptr<int64_t>(), N, M, T, cnt, start, ii, oi);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  pass(count.data_ptr<int64_t>(), nullptr, nullptr, nullptr);
  const at::Tensor ends = at::cumsum(count, 0);
  const int64_t P = ends[-1].item<int64_t>();
  const at::Tensor start = (ends - count).contiguous();
  at::Tensor in_idx = at::empty({P}, lopt), out_idx = at::empty({P}, lopt);
  if (P > 0) pass(nullptr, start.data_ptr<int64_t>(), in_idx.data_ptr<int64_t>(), out_idx.data_ptr<int64_t>());
  const at::Tensor counts = count.view({K, M}).sum(1);
  return {in_idx, out_idx, counts};
}

TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) { m.impl("kernel_map", &kernel_map_cuda); }

}  // namespace pcgrasp
