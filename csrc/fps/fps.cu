#include "fps/fps.h"

#include <torch/library.h>

#include <limits>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/fp.h"

namespace pcgrasp {
namespace {

constexpr int kFpsThreads = 1024;

// One block per cloud; the running minimum distance lives in a global scratch
// row (L2 resident for scene-sized clouds). See fps.h for the contract.
template <typename T>
__global__ void __launch_bounds__(kFpsThreads)
    fps_kernel(const T* __restrict__ pts, const int64_t* __restrict__ len,
               const int64_t* __restrict__ cnt, const int64_t* __restrict__ st, int64_t N,
               int64_t D, int64_t K, T* __restrict__ mind_buf, int64_t* __restrict__ out) {
  const int64_t b = blockIdx.x;
  const int64_t n = clamp_len(len[b], N);
  int64_t m = cnt[b] < 0 ? 0 : cnt[b];
  m = m < K ? m : K;
  m = m < n ? m : n;
  if (m <= 0) return;
  const T* P = pts + b * N * D;
  T* mind = mind_buf + b * N;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mind[i] = std::numeric_limits<T>::max();  // as the CPU kernel
  int64_t sel = st ? st[b] : 0;  // checked on the host: in [0, n)
  __syncthreads();
  if (threadIdx.x == 0) {
    out[b * K] = sel;
    mind[sel] = T(-1);
  }
  __syncthreads();
  T c[8];
  for (int64_t s = 1; s < m; ++s) {
    for (int64_t d = 0; d < D; ++d) c[d] = P[sel * D + d];
    T best = T(-2);
    int64_t bi = n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T dd = dist2_rn(P + i * D, c, D);
      const T old = mind[i];
      const T v = (old < dd || dd != dd) ? old : dd;  // a NaN distance (non-finite points, data checks
      mind[i] = v;                                      // off) leaves mind alone: selected points stay -1
      if (v > best) {  // i increases within a thread: strict keeps the lowest
        best = v;
        bi = i;
      }
    }
    block_argmax(best, bi);
    if (!(best >= T(0)) || bi >= n) {  // no unselected point compared: every distance left is NaN
      int64_t j = n;  // (non-finite points, data checks off), and bi is n or a selected point; take the
                      // lowest point not yet selected
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        if (!(mind[i] == T(-1))) { j = i; break; }
      T zero = T(0);
      block_argmax(zero, j);  // equal values: the lowest index wins
      bi = j;
    }
    sel = bi;
    if (threadIdx.x == 0) {
      out[b * K + s] = sel;
      mind[sel] = T(-1);
    }
    __syncthreads();
  }
}

}  // namespace

at::Tensor farthest_point_sample_cuda(const at::Tensor& points_in, const at::Tensor& lengths_in,
                                      const at::Tensor& counts_in, const c10::optional<at::Tensor>& start_in,
                                      int64_t K) {
  check_cloud(points_in, "points");
  const int64_t B = points_in.size(0), N = points_in.size(1), D = points_in.size(2);
  check_lengths(lengths_in, B, "lengths");
  check_lengths(counts_in, B, "k");
  check_same_device(points_in, lengths_in, "points", "lengths");
  check_same_device(points_in, counts_in, "points", "k");
  const bool given = start_in.has_value() && start_in->defined();
  if (given) {
    check_lengths(*start_in, B, "start");
    check_same_device(points_in, *start_in, "points", "start");
  }
  TORCH_CHECK(K >= 0, "k must be non-negative, got ", K);
  TORCH_CHECK(D >= 1 && D <= 8, "points must have 1 <= D <= 8, got D=", D);
  const c10::cuda::CUDAGuard guard(points_in.device());
  const at::Tensor points = to_compute(points_in);
  const at::Tensor lengths = lengths_in.contiguous(), counts = counts_in.contiguous();
  if (given) fps_check_start(*start_in, lengths, N);  // raises like the CPU kernel (one sync)
  const at::Tensor start = given ? start_in->contiguous() : at::Tensor();
  at::Tensor idx = at::full({B, K}, -1, points.options().dtype(at::kLong));
  if (B == 0 || K == 0 || N == 0) return idx;
  at::Tensor mind = at::empty({B, N}, points.options());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "farthest_point_sample_cuda", [&] {
    fps_kernel<scalar_t><<<static_cast<unsigned int>(B), kFpsThreads, 0, current_stream()>>>(
        points.data_ptr<scalar_t>(), lengths.data_ptr<int64_t>(), counts.data_ptr<int64_t>(),
        given ? start.data_ptr<int64_t>() : nullptr, N, D, K, mind.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return idx;
}

TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) {
  m.impl("farthest_point_sample", &farthest_point_sample_cuda);
}

}  // namespace pcgrasp
