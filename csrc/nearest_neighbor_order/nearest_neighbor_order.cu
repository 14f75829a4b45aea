#include "nearest_neighbor_order/nearest_neighbor_order.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <limits>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/fp.h"

namespace pcgrasp {
namespace {

constexpr int kSeqThreads = 128;

// NaN (non-finite centres, reachable only with data checks off) ranks last, as -inf, so that a step
// always picks a valid unvisited index (the lowest of the tied ones) and never writes past the row.
template <typename T>
__device__ __forceinline__ T not_nan(T x) { return x != x ? -std::numeric_limits<T>::infinity() : x; }

// One block per cloud; the visited flags live in a global scratch row. Each
// step is a block-wide argmin (as argmax of -d2, ties to the lower index).
template <typename T>
__global__ void __launch_bounds__(kSeqThreads)
    sequencer_kernel(const T* __restrict__ C, const int64_t* __restrict__ len, int64_t G,
                     bool* __restrict__ used_buf, int64_t* __restrict__ order) {
  const int64_t b = blockIdx.x;
  const int64_t n = clamp_len(len[b], G);
  if (n == 0) return;
  const T* P = C + b * G * 3;
  bool* used = used_buf + b * G;
  for (int64_t g = threadIdx.x; g < n; g += blockDim.x) used[g] = false;
  // start: smallest x+y+z
  T v = -std::numeric_limits<T>::infinity();
  int64_t bi = n;
  for (int64_t g = threadIdx.x; g < n; g += blockDim.x) {
    const T s = add_rn(add_rn(P[g * 3], P[g * 3 + 1]), P[g * 3 + 2]);
    argmax_merge(v, bi, not_nan(-s), g);
  }
  block_argmax(v, bi);
  int64_t cur = bi;
  for (int64_t step = 0; step < n; ++step) {
    if (threadIdx.x == 0) {
      order[b * G + step] = cur;
      used[cur] = true;
    }
    __syncthreads();
    v = -std::numeric_limits<T>::infinity();
    bi = n;
    for (int64_t g = threadIdx.x; g < n; g += blockDim.x)
      if (!used[g]) argmax_merge(v, bi, not_nan(-dist2_rn(P + g * 3, P + cur * 3, int64_t(3))), g);
    block_argmax(v, bi);
    cur = bi;
  }
}

}  // namespace

at::Tensor nearest_neighbor_order_cuda(const at::Tensor& centers_in, const at::Tensor& lengths_in) {
  nearest_neighbor_order_check_args(centers_in, lengths_in);
  const c10::cuda::CUDAGuard guard(centers_in.device());
  const at::Tensor c = to_compute(centers_in), lengths = lengths_in.contiguous();
  const int64_t B = c.size(0), G = c.size(1);
  at::Tensor order = at::full({B, G}, -1, c.options().dtype(at::kLong));
  if (B * G == 0) return order;
  at::Tensor used = at::empty({B, G}, c.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "nearest_neighbor_order_cuda", [&] {
    sequencer_kernel<scalar_t><<<static_cast<unsigned int>(B), kSeqThreads, 0, current_stream()>>>(
        c.data_ptr<scalar_t>(), lengths.data_ptr<int64_t>(), G, used.data_ptr<bool>(),
        order.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return order;
}

TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) { m.impl("nearest_neighbor_order", &nearest_neighbor_order_cuda); }

}  // namespace pcgrasp
