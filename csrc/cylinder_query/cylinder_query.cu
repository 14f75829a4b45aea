#include "cylinder_query/cylinder_query.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/neighbors.cuh"

namespace pcgrasp {
namespace {

// One thread per query, points streamed through shared memory (as ball_query).
template <typename T, int KMAX, bool NEAREST>
__global__ void __launch_bounds__(kNbrThreads)
    cylinder_kernel(const T* __restrict__ Q, const T* __restrict__ R, const T* __restrict__ P,
                    const int64_t* __restrict__ qlen, const int64_t* __restrict__ len, int64_t M,
                    int64_t N, int64_t k, T r2, T lo, T hi, int64_t* __restrict__ oi,
                    T* __restrict__ scratch, int64_t* __restrict__ oc, int64_t b0) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* tile = reinterpret_cast<T*>(smem);
  const int64_t b = b0 + blockIdx.y;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t n = clamp_len(len[b], N);
  const bool active = m < clamp_len(qlen[b], M);
  const int64_t row = (b * M + m) * k;
  T c[3], rot[9];
  if (active) {
    for (int d = 0; d < 3; ++d) c[d] = Q[(b * M + m) * 3 + d];
    for (int d = 0; d < 9; ++d) rot[d] = R[(b * M + m) * 9 + d];
  }
  T ld[KMAX > 0 ? KMAX : 1];
  int64_t li[KMAX > 0 ? KMAX : 1];
  T* bd = KMAX > 0 ? ld : scratch + row;
  int64_t* bi = KMAX > 0 ? li : oi + row;
  int64_t size = 0;
  bool done = !active || k == 0;
  const T* Pb = P + b * N * 3;
  for (int64_t t0 = 0; t0 < n; t0 += kNbrTile) {
    const int64_t cnt = (n - t0) < kNbrTile ? (n - t0) : kNbrTile;
    load_tile(tile, Pb, t0, cnt, int64_t(3));
    __syncthreads();
    if (!done) {
      for (int64_t j = 0; j < cnt; ++j) {
        const T rad = cylinder_radial(tile + j * 3, c, rot, r2, lo, hi);
        if (rad < T(0)) continue;
        if (NEAREST) {
          size = sorted_insert(bd, bi, size, k, rad, t0 + j);
        } else {
          bi[size] = t0 + j;
          if (++size == k) {
            done = true;
            break;
          }
        }
      }
    }
    if (!__syncthreads_or(!done)) break;
  }
  if (!active) return;
  if (KMAX > 0)
    for (int64_t j = 0; j < size; ++j) oi[row + j] = bi[j];
  oc[b * M + m] = size;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> cylinder_query_cuda(
    const at::Tensor& query_in, const at::Tensor& rotation_in, const at::Tensor& points_in,
    const at::Tensor& query_lengths, const at::Tensor& lengths, double radius, double hmin,
    double hmax, int64_t k, bool nearest) {
  cylinder_query_check_args(query_in, rotation_in, points_in, query_lengths, lengths, radius, hmin, hmax, k);
  check_same_device(query_in, query_lengths, "query", "query_lengths");
  check_same_device(points_in, lengths, "points", "lengths");
  const c10::cuda::CUDAGuard guard(query_in.device());
  const at::Tensor query = to_compute(query_in), points = to_compute(points_in);
  const at::Tensor rotation = rotation_in.to(query.scalar_type()).contiguous();
  const at::Tensor ql = query_lengths.contiguous(), l = lengths.contiguous();
  const int64_t B = query.size(0), M = query.size(1), N = points.size(1);
  at::Tensor idx = at::full({B, M, k}, -1, query.options().dtype(at::kLong));
  at::Tensor count = at::zeros({B, M}, query.options().dtype(at::kLong));
  if (B * M == 0 || k == 0 || N == 0) return {idx, count};
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "cylinder_query_cuda", [&] {
    const size_t shmem = sizeof(scalar_t) * kNbrTile * 3;
    at::Tensor scratch = (nearest && k > 64) ? at::empty({B, M, k}, query.options()) : at::Tensor();
    auto launch = [&](auto kernel) {
      for_each_cloud_chunk(B, M, [&](dim3 grid, int64_t b0) {
        kernel<<<grid, kNbrThreads, shmem, current_stream()>>>(
            query.data_ptr<scalar_t>(), rotation.data_ptr<scalar_t>(), points.data_ptr<scalar_t>(),
            ql.data_ptr<int64_t>(), l.data_ptr<int64_t>(), M, N, k, static_cast<scalar_t>(radius * radius),
            static_cast<scalar_t>(hmin), static_cast<scalar_t>(hmax), idx.data_ptr<int64_t>(),
            scratch.defined() ? scratch.data_ptr<scalar_t>() : nullptr, count.data_ptr<int64_t>(), b0);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    };
    if (nearest) {
      PCG_DISPATCH_KMAX(k, [&] { launch(cylinder_kernel<scalar_t, KMAX, true>); });
    } else {
      launch(cylinder_kernel<scalar_t, 0, false>);
    }
  });
  return {idx, count};
}

TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) { m.impl("cylinder_query", &cylinder_query_cuda); }

}  // namespace pcgrasp
