#include "ball_query/ball_query.h"

#include <torch/library.h>

#include <limits>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/fp.h"
#include "common/neighbors.cuh"
#include "knn/knn.h"

namespace pcgrasp {
namespace {

// One thread per query. NEAREST keeps a sorted list (registers for KMAX > 0,
// the output row for KMAX == 0); otherwise hits are appended in index order
// straight into the output row and the block stops once every query is full.
template <typename T, int KMAX, bool NEAREST>
__global__ void __launch_bounds__(kNbrThreads)
    ball_kernel(const T* __restrict__ Q, const T* __restrict__ P, const int64_t* __restrict__ qlen,
                const int64_t* __restrict__ len, int64_t M, int64_t N, int64_t D, int64_t k, T r2,
                int64_t* __restrict__ oi, T* __restrict__ od, int64_t* __restrict__ oc, int64_t b0) {
  extern __shared__ __align__(16) unsigned char smem[];  // holds float or double tiles
  T* tile = reinterpret_cast<T*>(smem);
  const int64_t b = b0 + blockIdx.y;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t n = clamp_len(len[b], N);
  const bool active = m < clamp_len(qlen[b], M) && r2 > T(0);
  const int64_t row = (b * M + m) * k;
  T q[8];
  if (active)
    for (int64_t d = 0; d < D; ++d) q[d] = Q[(b * M + m) * D + d];
  T ld[KMAX > 0 ? KMAX : 1];
  int64_t li[KMAX > 0 ? KMAX : 1];
  T* bd = KMAX > 0 ? ld : od + row;
  int64_t* bi = KMAX > 0 ? li : oi + row;
  int64_t size = 0;
  bool done = !active || k == 0;
  const T* Pb = P + b * N * D;
  for (int64_t t0 = 0; t0 < n; t0 += kNbrTile) {
    const int64_t cnt = (n - t0) < kNbrTile ? (n - t0) : kNbrTile;
    load_tile(tile, Pb, t0, cnt, D);
    __syncthreads();
    if (!done) {
      for (int64_t j = 0; j < cnt; ++j) {
        const T d = dist2_rn(tile + j * D, q, D);
        if (!(d < r2)) continue;
        if (NEAREST) {
          size = sorted_insert(bd, bi, size, k, d, t0 + j);
        } else {
          bd[size] = d;
          bi[size] = t0 + j;
          if (++size == k) {
            done = true;
            break;
          }
        }
      }
    }
    if (!__syncthreads_or(!done)) break;  // also the barrier before the next tile load
  }
  if (!active) return;
  if (KMAX > 0)
    for (int64_t j = 0; j < size; ++j) {
      od[row + j] = bd[j];
      oi[row + j] = bi[j];
    }
  oc[b * M + m] = size;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> ball_query_cuda(
    const at::Tensor& query_in, const at::Tensor& points_in, const at::Tensor& query_lengths,
    const at::Tensor& lengths, double radius, int64_t k, bool nearest) {
  knn_check_args(query_in, points_in, query_lengths, lengths, k);
  check_same_device(query_in, query_lengths, "query", "query_lengths");
  check_same_device(points_in, lengths, "points", "lengths");
  TORCH_CHECK(radius >= 0, "radius must be non-negative, got ", radius);
  const c10::cuda::CUDAGuard guard(query_in.device());
  const at::Tensor query = to_compute(query_in), points = to_compute(points_in);
  const at::Tensor ql = query_lengths.contiguous(), l = lengths.contiguous();
  const int64_t B = query.size(0), M = query.size(1), N = points.size(1), D = points.size(2);
  at::Tensor idx = at::full({B, M, k}, -1, query.options().dtype(at::kLong));
  at::Tensor dist = at::full({B, M, k}, std::numeric_limits<double>::infinity(), query.options());
  at::Tensor count = at::zeros({B, M}, query.options().dtype(at::kLong));
  if (B > 0 && M > 0 && k > 0 && N > 0) {
    AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "ball_query_cuda", [&] {
      const size_t shmem = sizeof(scalar_t) * kNbrTile * D;
      const scalar_t r2 = static_cast<scalar_t>(radius * radius);
      auto args = [&](auto kernel) {
        for_each_cloud_chunk(B, M, [&](dim3 grid, int64_t b0) {
          kernel<<<grid, kNbrThreads, shmem, current_stream()>>>(
              query.data_ptr<scalar_t>(), points.data_ptr<scalar_t>(), ql.data_ptr<int64_t>(),
              l.data_ptr<int64_t>(), M, N, D, k, r2, idx.data_ptr<int64_t>(),
              dist.data_ptr<scalar_t>(), count.data_ptr<int64_t>(), b0);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      };
      if (nearest) {
        PCG_DISPATCH_KMAX(k, [&] { args(ball_kernel<scalar_t, KMAX, true>); });
      } else {
        args(ball_kernel<scalar_t, 0, false>);
      }
    });
  }
  return {dist.to(query_in.scalar_type()), idx, count};
}

TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) { m.impl("ball_query", &ball_query_cuda); }

}  // namespace pcgrasp
