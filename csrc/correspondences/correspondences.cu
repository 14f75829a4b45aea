#include "correspondences/correspondences.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <limits>

#include "common/cellkeys.h"
#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/fp.h"

namespace pcgrasp {
namespace {

constexpr int kThreads = 256;

// World coordinates and cell keys of every dst point; padding gets kInvalidKey.
template <typename T>
__global__ void world_keys_kernel(const T* __restrict__ P, const int64_t* __restrict__ len,
                                  const T* __restrict__ T4, int64_t B, int64_t M, double inv,
                                  T* __restrict__ W, int64_t* __restrict__ keys) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < B * M;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t / M, j = t % M;
    if (j < clamp_len(len[b], M)) {
      apply_rigid(T4 ? T4 + b * 16 : nullptr, P + t * 3, W + t * 3);
      keys[t] = cell_key(W + t * 3, inv);
    } else {
      W[t * 3] = W[t * 3 + 1] = W[t * 3 + 2] = T(0);
      keys[t] = kInvalidKey;
    }
  }
}

// The sorted dst index of all clouds, as device tensors.
struct SortedDst {
  at::Tensor keys, perm, w;  // [B, M], [B, M], [B, M, 3]
};

SortedDst build_sorted(const at::Tensor& dst, const at::Tensor& dl, const at::Tensor& td, double inv) {
  const int64_t B = dst.size(0), M = dst.size(1);
  at::Tensor w = at::empty({B, M, 3}, dst.options());
  at::Tensor keys = at::empty({B, M}, dst.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(dst.scalar_type(), "correspondences_build", [&] {
    world_keys_kernel<scalar_t><<<grid_for(B * M, kThreads), kThreads, 0, current_stream()>>>(
        dst.data_ptr<scalar_t>(), dl.data_ptr<int64_t>(), td.defined() ? td.data_ptr<scalar_t>() : nullptr,
        B, M, inv, w.data_ptr<scalar_t>(), keys.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  SortedDst s;
  s.keys = std::get<0>(sorted).contiguous();
  s.perm = std::get<1>(sorted).contiguous();
  s.w = w.gather(1, s.perm.unsqueeze(-1).expand({B, M, 3})).contiguous();
  return s;
}

// Enumerates the in-radius dst points of src point t = b * N + i.
template <typename T, typename F>
__device__ void neighbours(const T* S, const T* TS, const int64_t* keys, const int64_t* perm,
                           const T* W, const int64_t* dl, int64_t N, int64_t M, double inv, T r2,
                           int64_t t, F&& f) {
  const int64_t b = t / N;
  T w[3];
  apply_rigid(TS ? TS + b * 16 : nullptr, S + t * 3, w);
  const int64_t n = clamp_len(dl[b], M);
  const int64_t* kr = keys + b * M;
  for_each_neighbor_cell(kr, n, cell_of(double(w[0]), inv), cell_of(double(w[1]), inv),
                         cell_of(double(w[2]), inv), [&](int64_t pos) {
                           const T d = dist2_rn(W + (b * M + pos) * 3, w, int64_t(3));
                           if (d < r2) f(perm[b * M + pos], d);
                         });
}

template <typename T>
__global__ void nearest_kernel(const T* __restrict__ S, const T* __restrict__ TS,
                               const int64_t* __restrict__ sl, const int64_t* __restrict__ dl,
                               const int64_t* __restrict__ keys, const int64_t* __restrict__ perm,
                               const T* __restrict__ W, int64_t B, int64_t N, int64_t M, double inv,
                               T r2, int64_t* __restrict__ oi, T* __restrict__ od) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < B * N;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (t % N >= clamp_len(sl[t / N], N)) continue;
    T bd = std::numeric_limits<T>::infinity();
    int64_t bj = -1;
    neighbours(S, TS, keys, perm, W, dl, N, M, inv, r2, t, [&](int64_t j, T d) {
      if (bj < 0 || before(d, j, bd, bj)) {
        bd = d;
        bj = j;
      }
    });
    oi[t] = bj;
    od[t] = bd;
  }
}

// Pass 1 (count != nullptr): per-source hit counts, capped. Pass 2: fill each
// source's segment [off[t], off[t] + count) with dst indices; with a cap the
// segment is kept sorted by (d2, j) so it ends up holding the nearest.
template <typename T>
__global__ void pairs_kernel(const T* __restrict__ S, const T* __restrict__ TS,
                             const int64_t* __restrict__ sl, const int64_t* __restrict__ dl,
                             const int64_t* __restrict__ keys, const int64_t* __restrict__ perm,
                             const T* __restrict__ W, int64_t B, int64_t N, int64_t M, double inv,
                             T r2, int64_t cap, int64_t* __restrict__ count,
                             const int64_t* __restrict__ off, int64_t* __restrict__ seg_j,
                             T* __restrict__ seg_d) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < B * N;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (t % N >= clamp_len(sl[t / N], N)) {
      if (count) count[t] = 0;
      continue;
    }
    int64_t c = 0;
    if (count) {
      neighbours(S, TS, keys, perm, W, dl, N, M, inv, r2, t, [&](int64_t, T) { ++c; });
      count[t] = (cap > 0 && c > cap) ? cap : c;
    } else {
      const int64_t o = off[t];
      neighbours(S, TS, keys, perm, W, dl, N, M, inv, r2, t, [&](int64_t j, T d) {
        if (cap > 0)
          c = sorted_insert(seg_d + o, seg_j + o, c, cap, d, j);
        else
          seg_j[o + c++] = j;
      });
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> correspondences_cuda(
    const at::Tensor& src_in, const at::Tensor& dst_in, const at::Tensor& src_lengths,
    const at::Tensor& dst_lengths, const c10::optional<at::Tensor>& src_transform,
    const c10::optional<at::Tensor>& dst_transform, double radius) {
  // checks first: a CPU input among CUDA ones must get the checks' clear error, not the guard's
  auto [ts, td] = correspondences_check_args(src_in, dst_in, src_lengths, dst_lengths, src_transform,
                                             dst_transform, radius, compute_dtype(src_in.scalar_type()));
  const c10::cuda::CUDAGuard guard(src_in.device());
  const at::Tensor src = to_compute(src_in), dst = to_compute(dst_in);
  const at::Tensor sl = src_lengths.contiguous(), dl = dst_lengths.contiguous();
  const int64_t B = src.size(0), N = src.size(1), M = dst.size(1);
  at::Tensor idx = at::full({B, N}, -1, src.options().dtype(at::kLong));
  at::Tensor dist = at::full({B, N}, std::numeric_limits<double>::infinity(), src.options());
  if (B * N == 0 || M == 0 || !(radius > 0)) return {idx, dist.to(src_in.scalar_type())};
  const double inv = 1.0 / radius;
  SortedDst s = build_sorted(dst, dl, td, inv);
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "correspondences_cuda", [&] {
    nearest_kernel<scalar_t><<<grid_for(B * N, kThreads), kThreads, 0, current_stream()>>>(
        src.data_ptr<scalar_t>(), ts.defined() ? ts.data_ptr<scalar_t>() : nullptr,
        sl.data_ptr<int64_t>(), dl.data_ptr<int64_t>(), s.keys.data_ptr<int64_t>(),
        s.perm.data_ptr<int64_t>(), s.w.data_ptr<scalar_t>(), B, N, M, inv,
        static_cast<scalar_t>(radius * radius), idx.data_ptr<int64_t>(), dist.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {idx, dist.to(src_in.scalar_type())};
}

at::Tensor radius_pairs_cuda(const at::Tensor& src_in, const at::Tensor& dst_in,
                             const at::Tensor& src_lengths, const at::Tensor& dst_lengths,
                             const c10::optional<at::Tensor>& src_transform,
                             const c10::optional<at::Tensor>& dst_transform, double radius,
                             int64_t max_pairs) {
  // checks first: a CPU input among CUDA ones must get the checks' clear error, not the guard's
  auto [ts, td] = correspondences_check_args(src_in, dst_in, src_lengths, dst_lengths, src_transform,
                                             dst_transform, radius, compute_dtype(src_in.scalar_type()));
  const c10::cuda::CUDAGuard guard(src_in.device());
  const at::Tensor src = to_compute(src_in), dst = to_compute(dst_in);
  const at::Tensor sl = src_lengths.contiguous(), dl = dst_lengths.contiguous();
  const int64_t B = src.size(0), N = src.size(1), M = dst.size(1);
  const auto lopt = src.options().dtype(at::kLong);
  if (B * N == 0 || M == 0 || !(radius > 0)) return at::empty({0, 3}, lopt);
  const double inv = 1.0 / radius;
  SortedDst s = build_sorted(dst, dl, td, inv);
  at::Tensor count = at::empty({B * N}, lopt);
  at::Tensor key;  // sorted source * M + j of every pair
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "radius_pairs_cuda", [&] {
    // pass 1 counts (count != nullptr); pass 2 fills the segments
    auto pass = [&](int64_t* cnt, const int64_t* off, int64_t* sj, scalar_t* sd) {
      pairs_kernel<scalar_t><<<grid_for(B * N, kThreads), kThreads, 0, current_stream()>>>(
          src.data_ptr<scalar_t>(), ts.defined() ? ts.data_ptr<scalar_t>() : nullptr, sl.data_ptr<int64_t>(),
          dl.data_ptr<int64_t>(), s.keys.data_ptr<int64_t>(), s.perm.data_ptr<int64_t>(),
          s.w.data_ptr<scalar_t>(), B, N, M, inv, static_cast<scalar_t>(radius * radius), max_pairs, cnt, off,
          sj, sd);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    pass(count.data_ptr<int64_t>(), nullptr, nullptr, nullptr);
    const at::Tensor ends = at::cumsum(count, 0);
    const int64_t P = ends[-1].item<int64_t>();
    const at::Tensor off = (ends - count).contiguous();
    at::Tensor seg_j = at::empty({P}, lopt);
    at::Tensor seg_d = max_pairs > 0 ? at::empty({P}, src.options()) : at::Tensor();
    if (P > 0)
      pass(nullptr, off.data_ptr<int64_t>(), seg_j.data_ptr<int64_t>(),
           seg_d.defined() ? seg_d.data_ptr<scalar_t>() : nullptr);
    // sort every pair by (source, j): source = b * N + i
    const at::Tensor src_id = at::repeat_interleave(at::arange(B * N, lopt), count, c10::nullopt, P);
    key = std::get<0>(at::sort(src_id * M + seg_j, /*stable=*/false, 0, false));
  });
  const at::Tensor t = at::div(key, M, "floor"), j = key - t * M;
  return at::stack({at::div(t, N, "floor"), at::remainder(t, N), j}, 1);
}

TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) {
  m.impl("correspondences", &correspondences_cuda);
  m.impl("radius_pairs", &radius_pairs_cuda);
}

}  // namespace pcgrasp
