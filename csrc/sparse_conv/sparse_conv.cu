// CUDA sparse convolution: one launch per layer over all kernel offsets (see sparse_conv.h).
//
// Forward / input gradient: a thread block owns kTile output rows x kTile output channels. For
// every offset it finds its rows' pairs by binary search (out_idx is sorted inside each offset's
// group), gathers up to kTile pairs' input rows through shared memory, multiplies them with the
// offset's weight tile (SIMT in float / double; WMMA tensor cores for half / bfloat16 with fp32
// accumulation), and adds the products to its shared accumulator in pair order, one thread per
// channel: no atomics, so the sum order is fixed and duplicate pairs of a row are safe.
// Weight gradient: a partial [Cin, Cout] per (offset, fixed chunk of pairs), then a reduction
// over each offset's chunks in order: deterministic.
// Pairs whose indices fall outside the maps are skipped (never read out of bounds); the order is
// trusted. ops.sparse_conv_pairs / sparse_conv_weight_grad check a map's values before the launch
// (one host read; skipped under ops.data_checks(False)), and pcgrasp.nn checks its maps where they
// are made.
#include "sparse_conv/sparse_conv.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "common/checks.h"
#include "common/cuda_utils.cuh"

namespace pcgrasp {
namespace {

constexpr int kTile = 32;     // output rows (and pairs per step) x output channels per block
constexpr int kThreads = 256;  // SIMT: each thread computes 4 of the 32 x 32 products
constexpr int kWmmaThreads = 128;  // WMMA: 4 warps, one 16 x 16 fragment each
constexpr int kWmmaK = 16;

template <typename T>
struct Acc { using type = float; };
template <>
struct Acc<double> { using type = double; };

template <typename T>
__device__ __forceinline__ typename Acc<T>::type to_acc(T v) { return static_cast<typename Acc<T>::type>(v); }

__device__ __forceinline__ void group_range(const int64_t* __restrict__ out, int64_t s, int64_t e, int64_t o0,
                                            int64_t o1, int64_t& lo, int64_t& hi) {
  int64_t a = s, b = e;
  while (a < b) {
    const int64_t m = a + (b - a) / 2;
    if (out[m] < o0) a = m + 1; else b = m;
  }
  lo = a;
  b = e;
  while (a < b) {
    const int64_t m = a + (b - a) / 2;
    if (out[m] < o1) a = m + 1; else b = m;
  }
  hi = a;
}

// The accumulator tile in shared memory; the scatter of one step's products in pair order.
template <typename acc_t>
__device__ __forceinline__ void scatter_products(acc_t (*acc)[kTile], acc_t (*prod)[kTile + 1],
                                                 const int* row, int m) {
  if (threadIdx.x < kTile) {
    const int c = threadIdx.x;
    for (int j = 0; j < m; ++j)
      if (row[j] >= 0) acc[row[j]][c] += prod[j][c];
  }
}

template <typename scalar_t>
__global__ void conv_simt_kernel(const scalar_t* __restrict__ X, const scalar_t* __restrict__ W,
                                 const int64_t* __restrict__ in, const int64_t* __restrict__ out,
                                 const int64_t* __restrict__ start, int K, int64_t n_in, int64_t n_out, int cin,
                                 int cout, int identity, bool tw, scalar_t* __restrict__ Y) {
  using acc_t = typename Acc<scalar_t>::type;
  __shared__ acc_t acc[kTile][kTile];
  __shared__ acc_t As[kTile][kTile + 1];
  __shared__ acc_t Bs[kTile][kTile + 1];
  __shared__ acc_t prod[kTile][kTile + 1];
  __shared__ int64_t src[kTile];
  __shared__ int row[kTile];
  __shared__ int64_t range[2];
  const int64_t o0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int c0 = blockIdx.y * kTile;
  const int tid = threadIdx.x, pr = tid / 8, pc = (tid % 8) * 4;
  for (int e = tid; e < kTile * kTile; e += blockDim.x) acc[e / kTile][e % kTile] = acc_t(0);
  const int64_t rows = min(static_cast<int64_t>(kTile), n_out - o0);
  for (int k = 0; k < K; ++k) {
    if (tid == 0) {
      if (k == identity) { range[0] = o0; range[1] = o0 + rows; }
      else group_range(out, start[k], start[k + 1], o0, o0 + rows, range[0], range[1]);
    }
    __syncthreads();
    const int64_t lo = range[0], hi = range[1];
    __syncthreads();  // every thread has read range before thread 0 writes the next offset's (an empty
                      // offset runs no barrier in the pair loop)
    const scalar_t* Wk = W + static_cast<int64_t>(k) * cin * cout;
    for (int64_t p0 = lo; p0 < hi; p0 += kTile) {
      const int m = static_cast<int>(min(static_cast<int64_t>(kTile), hi - p0));
      if (tid < kTile) {
        int64_t i = -1, r = -1;
        if (tid < m) {
          const int64_t p = p0 + tid;
          i = k == identity ? p : in[p];
          const int64_t o = k == identity ? p : out[p];
          r = o - o0;
          if (i < 0 || i >= n_in || r < 0 || r >= rows) i = r = -1;  // outside the maps: skipped
        }
        src[tid] = i;
        row[tid] = static_cast<int>(r);
      }
      __syncthreads();
      acc_t sum[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
      for (int k0 = 0; k0 < cin; k0 += kTile) {
        for (int e = tid; e < kTile * kTile; e += blockDim.x) {
          const int a = e / kTile, b = e % kTile;
          // As[pair a][input channel k0 + b]; Bs[input channel k0 + a][output channel c0 + b]
          As[a][b] = (a < m && src[a] >= 0 && k0 + b < cin) ? to_acc(X[src[a] * cin + k0 + b]) : acc_t(0);
          const int ci = k0 + a, co = c0 + b;
          Bs[a][b] = (ci < cin && co < cout) ? to_acc(tw ? Wk[static_cast<int64_t>(co) * cin + ci]
                                                         : Wk[static_cast<int64_t>(ci) * cout + co])
                                             : acc_t(0);
        }
        __syncthreads();
#pragma unroll 8
        for (int q = 0; q < kTile; ++q) {
          const acc_t a = As[pr][q];
          for (int j = 0; j < 4; ++j) sum[j] += a * Bs[q][pc + j];
        }
        __syncthreads();
      }
      for (int j = 0; j < 4; ++j) prod[pr][pc + j] = sum[j];
      __syncthreads();
      scatter_products<acc_t>(acc, prod, row, m);
      __syncthreads();
    }
  }
  for (int e = tid; e < kTile * kTile; e += blockDim.x) {
    const int r = e / kTile, c = e % kTile;
    if (r < rows && c0 + c < cout) Y[(o0 + r) * cout + c0 + c] = static_cast<scalar_t>(acc[r][c]);
  }
}

template <typename scalar_t>
struct WmmaType { using type = void; };
template <>
struct WmmaType<at::Half> {
  using type = __half;
  static __device__ __forceinline__ type zero() { return __float2half(0.f); }
};
template <>
struct WmmaType<at::BFloat16> {
  using type = __nv_bfloat16;
  static __device__ __forceinline__ type zero() { return __float2bfloat16(0.f); }
};

// Half types on tensor cores: the same tiles, the 32 x 32 product as four 16 x 16 x 16 WMMA
// fragments per input-channel step, fp32 accumulation.
template <typename scalar_t>
__global__ void conv_wmma_kernel(const scalar_t* __restrict__ X, const scalar_t* __restrict__ W,
                                 const int64_t* __restrict__ in, const int64_t* __restrict__ out,
                                 const int64_t* __restrict__ start, int K, int64_t n_in, int64_t n_out, int cin,
                                 int cout, int identity, bool tw, scalar_t* __restrict__ Y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  using T = typename WmmaType<scalar_t>::type;
  __shared__ float acc[kTile][kTile];
  __shared__ __align__(32) T As[kTile][kWmmaK];
  __shared__ __align__(32) T Bs[kWmmaK][kTile];
  __shared__ __align__(32) float prod_raw[kTile][kTile];
  __shared__ float prod[kTile][kTile + 1];
  __shared__ int64_t src[kTile];
  __shared__ int row[kTile];
  __shared__ int64_t range[2];
  const int64_t o0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int c0 = blockIdx.y * kTile;
  const int tid = threadIdx.x, warp = tid / 32, wr = (warp / 2) * 16, wc = (warp % 2) * 16;
  for (int e = tid; e < kTile * kTile; e += blockDim.x) acc[e / kTile][e % kTile] = 0.f;
  const int64_t rows = min(static_cast<int64_t>(kTile), n_out - o0);
  const T zero = WmmaType<scalar_t>::zero();
  for (int k = 0; k < K; ++k) {
    if (tid == 0) {
      if (k == identity) { range[0] = o0; range[1] = o0 + rows; }
      else group_range(out, start[k], start[k + 1], o0, o0 + rows, range[0], range[1]);
    }
    __syncthreads();
    const int64_t lo = range[0], hi = range[1];
    __syncthreads();  // every thread has read range before thread 0 writes the next offset's (an empty
                      // offset runs no barrier in the pair loop)
    const scalar_t* Wk = W + static_cast<int64_t>(k) * cin * cout;
    for (int64_t p0 = lo; p0 < hi; p0 += kTile) {
      const int m = static_cast<int>(min(static_cast<int64_t>(kTile), hi - p0));
      if (tid < kTile) {
        int64_t i = -1, r = -1;
        if (tid < m) {
          const int64_t p = p0 + tid;
          i = k == identity ? p : in[p];
          const int64_t o = k == identity ? p : out[p];
          r = o - o0;
          if (i < 0 || i >= n_in || r < 0 || r >= rows) i = r = -1;
        }
        src[tid] = i;
        row[tid] = static_cast<int>(r);
      }
      __syncthreads();
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c_frag;
      wmma::fill_fragment(c_frag, 0.f);
      for (int k0 = 0; k0 < cin; k0 += kWmmaK) {
        for (int e = tid; e < kTile * kWmmaK; e += blockDim.x) {
          const int a = e / kWmmaK, b = e % kWmmaK;
          As[a][b] = (a < m && src[a] >= 0 && k0 + b < cin)
                         ? reinterpret_cast<const T*>(X)[src[a] * cin + k0 + b] : zero;
          const int ci = k0 + e / kTile, co = c0 + e % kTile;
          Bs[e / kTile][e % kTile] =
              (ci < cin && co < cout)
                  ? reinterpret_cast<const T*>(Wk)[tw ? static_cast<int64_t>(co) * cin + ci
                                                      : static_cast<int64_t>(ci) * cout + co]
                  : zero;
        }
        __syncthreads();
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a_frag;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b_frag;
        wmma::load_matrix_sync(a_frag, &As[wr][0], kWmmaK);
        wmma::load_matrix_sync(b_frag, &Bs[0][wc], kTile);
        wmma::mma_sync(c_frag, a_frag, b_frag, c_frag);
        __syncthreads();
      }
      wmma::store_matrix_sync(&prod_raw[wr][wc], c_frag, kTile, wmma::mem_row_major);
      __syncthreads();
      for (int e = tid; e < kTile * kTile; e += blockDim.x) prod[e / kTile][e % kTile] = prod_raw[e / kTile][e % kTile];
      __syncthreads();
      scatter_products<float>(acc, prod, row, m);
      __syncthreads();
    }
  }
  for (int e = tid; e < kTile * kTile; e += blockDim.x) {
    const int r = e / kTile, c = e % kTile;
    if (r < rows && c0 + c < cout) Y[(o0 + r) * cout + c0 + c] = static_cast<scalar_t>(acc[r][c]);
  }
#endif
}

// partial[t][Cin tile][Cout tile] = sum over the chunk's pairs of X[i]^T G[o].
template <typename scalar_t>
__global__ void wgrad_partial_kernel(const scalar_t* __restrict__ X, const scalar_t* __restrict__ G,
                                     const int64_t* __restrict__ in, const int64_t* __restrict__ out,
                                     const int64_t* __restrict__ task_p, const int64_t* __restrict__ task_end,
                                     const int* __restrict__ task_k, int identity, const int64_t* __restrict__ start,
                                     int64_t n_in, int64_t n_out, int cin, int cout,
                                     typename Acc<scalar_t>::type* __restrict__ part) {
  using acc_t = typename Acc<scalar_t>::type;
  __shared__ acc_t Xs[kTile][kTile + 1];
  __shared__ acc_t Gs[kTile][kTile + 1];
  const int64_t t = blockIdx.x;
  const int ci0 = blockIdx.y * kTile, co0 = blockIdx.z * kTile;
  const int tid = threadIdx.x, r = tid / 8, cc = (tid % 8) * 4;
  const int k = task_k[t];
  const int64_t p_begin = task_p[t], p_end = task_end[t];
  acc_t sum[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
  for (int64_t p0 = p_begin; p0 < p_end; p0 += kTile) {
    for (int e = tid; e < kTile * kTile; e += blockDim.x) {
      const int j = e / kTile, c = e % kTile;
      const int64_t p = p0 + j;
      int64_t i = -1, o = -1;
      if (p < p_end) {
        i = k == identity ? p - start[k] : in[p];
        o = k == identity ? p - start[k] : out[p];
        if (i < 0 || i >= n_in || o < 0 || o >= n_out) i = o = -1;
      }
      Xs[j][c] = (i >= 0 && ci0 + c < cin) ? to_acc(X[i * cin + ci0 + c]) : acc_t(0);
      Gs[j][c] = (o >= 0 && co0 + c < cout) ? to_acc(G[o * cout + co0 + c]) : acc_t(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int j = 0; j < kTile; ++j) {
      const acc_t a = Xs[j][r];
      for (int q = 0; q < 4; ++q) sum[q] += a * Gs[j][cc + q];
    }
    __syncthreads();
  }
  if (ci0 + r < cin)
    for (int q = 0; q < 4; ++q)
      if (co0 + cc + q < cout) part[(t * cin + ci0 + r) * cout + co0 + cc + q] = sum[q];
}

template <typename scalar_t>
__global__ void wgrad_reduce_kernel(const typename Acc<scalar_t>::type* __restrict__ part,
                                    const int64_t* __restrict__ first_task, int K, int64_t cc,
                                    scalar_t* __restrict__ gw) {
  using acc_t = typename Acc<scalar_t>::type;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < K * cc;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = e / cc, r = e % cc;
    acc_t s = acc_t(0);
    for (int64_t t = first_task[k]; t < first_task[k + 1]; ++t) s += part[t * cc + r];
    gw[e] = static_cast<scalar_t>(s);
  }
}

// A small host array on the device without a host sync: staged in pinned memory (the caching host
// allocator keeps the buffer until the copy has run) and copied on the current stream. A pageable
// copy would wait for the whole stream: one host sync per layer.
template <typename T>
at::Tensor to_device_async(const std::vector<T>& v, const at::Device& device) {
  const at::Tensor h = at::tensor(v, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value)).pin_memory();
  return h.to(device, h.scalar_type(), /*non_blocking=*/true);
}

// Pairs per weight-gradient chunk: P pairs in all, at most ~16M partial elements (64 MB in
// float32) whatever the map; the chunking depends on the map alone.
int64_t wgrad_chunk(int64_t P, int64_t cin, int64_t cout) {
  const int64_t max_chunks = std::max<int64_t>(1, (int64_t(1) << 24) / std::max<int64_t>(1, cin * cout));
  return std::max<int64_t>(1024, (P + max_chunks - 1) / max_chunks);
}

// The WMMA kernel has a body only where it was compiled for compute capability >= 8.0 (its
// __CUDA_ARCH__ guard): a build whose arch list reaches this device through older PTX (say
// 7.5+PTX on an sm_90 GPU) would launch an empty kernel, so the PTX version of the code the
// driver loads for this device is checked as well; otherwise the SIMT kernel runs.
template <typename scalar_t>
bool use_wmma(const at::Tensor& x) {
  const char* env = std::getenv("PCGRASP_SPARSE_CONV_WMMA");
  if (env && env[0] == '0') return false;
  if (at::cuda::getDeviceProperties(x.device().index())->major < 8) return false;
  cudaFuncAttributes attr;
  if (cudaFuncGetAttributes(&attr, conv_wmma_kernel<scalar_t>) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error: no usable image for this device
    return false;
  }
  return attr.ptxVersion >= 80;
}

}  // namespace

at::Tensor sparse_conv_cuda(const at::Tensor& features, const at::Tensor& weight, const at::Tensor& in_idx,
                            const at::Tensor& out_idx, at::IntArrayRef counts, int64_t n_out, int64_t identity,
                            bool transpose_weight) {
  const std::vector<int64_t> start_h = sparse_conv_check_args(features, weight, in_idx, out_idx, counts, n_out,
                                                              identity, transpose_weight);
  const c10::cuda::CUDAGuard guard(features.device());
  const at::Tensor x = features.contiguous(), w = weight.contiguous();
  const at::Tensor ii = in_idx.contiguous(), oi = out_idx.contiguous();
  const int64_t cin = x.size(1), cout = w.size(transpose_weight ? 1 : 2);
  at::Tensor y = at::empty({n_out, cout}, x.options());
  if (n_out == 0 || cout == 0) return y;
  const at::Tensor start = to_device_async(start_h, x.device());
  const dim3 grid(static_cast<unsigned>(ceil_div(n_out, kTile)), static_cast<unsigned>(ceil_div(cout, kTile)));
  TORCH_CHECK(grid.y <= 65535, "sparse_conv: too many output channels (", cout, ")");
  const int K = static_cast<int>(counts.size());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sparse_conv_cuda", [&] {
    if constexpr (std::is_same_v<scalar_t, at::Half> || std::is_same_v<scalar_t, at::BFloat16>) {
      if (use_wmma<scalar_t>(x)) {
        conv_wmma_kernel<scalar_t><<<grid, kWmmaThreads, 0, current_stream()>>>(
            x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), ii.data_ptr<int64_t>(), oi.data_ptr<int64_t>(),
            start.data_ptr<int64_t>(), K, x.size(0), n_out, static_cast<int>(cin), static_cast<int>(cout),
            static_cast<int>(identity), transpose_weight, y.data_ptr<scalar_t>());
        return;
      }
    }
    conv_simt_kernel<scalar_t><<<grid, kThreads, 0, current_stream()>>>(
        x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), ii.data_ptr<int64_t>(), oi.data_ptr<int64_t>(),
        start.data_ptr<int64_t>(), K, x.size(0), n_out, static_cast<int>(cin), static_cast<int>(cout),
        static_cast<int>(identity), transpose_weight, y.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

at::Tensor sparse_conv_weight_grad_cuda(const at::Tensor& features, const at::Tensor& grad,
                                        const at::Tensor& in_idx, const at::Tensor& out_idx,
                                        at::IntArrayRef counts, int64_t identity) {
  const std::vector<int64_t> start_h =
      sparse_conv_weight_grad_check_args(features, grad, in_idx, out_idx, counts, identity);
  const c10::cuda::CUDAGuard guard(features.device());
  const at::Tensor x = features.contiguous(), g = grad.contiguous();
  const at::Tensor ii = in_idx.contiguous(), oi = out_idx.contiguous();
  const int K = static_cast<int>(counts.size());
  const int64_t cin = x.size(1), cout = g.size(1);
  at::Tensor gw = at::zeros({K, cin, cout}, x.options());
  if (gw.numel() == 0 || start_h[K] == 0) return gw;
  const int64_t chunk = wgrad_chunk(start_h[K], cin, cout);
  std::vector<int64_t> tp, te, first(K + 1, 0);
  std::vector<int> tk;
  for (int k = 0; k < K; ++k) {
    first[k] = static_cast<int64_t>(tp.size());
    for (int64_t p = start_h[k]; p < start_h[k + 1]; p += chunk) {
      tp.push_back(p);
      te.push_back(std::min(p + chunk, start_h[k + 1]));
      tk.push_back(k);
    }
  }
  const int64_t T = static_cast<int64_t>(tp.size());
  first[K] = T;
  TORCH_CHECK(T < (int64_t(1) << 31) && ceil_div(cin, kTile) <= 65535 && ceil_div(cout, kTile) <= 65535,
              "sparse_conv_weight_grad: too many chunks or channels");
  const at::Tensor d_tp = to_device_async(tp, x.device()), d_te = to_device_async(te, x.device());
  const at::Tensor d_tk = to_device_async(tk, x.device());
  const at::Tensor d_first = to_device_async(first, x.device());
  const at::Tensor d_start = to_device_async(start_h, x.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sparse_conv_weight_grad_cuda", [&] {
    using acc_t = typename Acc<scalar_t>::type;
    at::Tensor part = at::empty({T, cin, cout}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(ceil_div(cin, kTile)),
                    static_cast<unsigned>(ceil_div(cout, kTile)));
    wgrad_partial_kernel<scalar_t><<<grid, kThreads, 0, current_stream()>>>(
        x.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), ii.data_ptr<int64_t>(), oi.data_ptr<int64_t>(),
        d_tp.data_ptr<int64_t>(), d_te.data_ptr<int64_t>(), d_tk.data_ptr<int>(), static_cast<int>(identity),
        d_start.data_ptr<int64_t>(), x.size(0), g.size(0), static_cast<int>(cin), static_cast<int>(cout),
        part.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    wgrad_reduce_kernel<scalar_t><<<grid_for(K * cin * cout, kThreads), kThreads, 0, current_stream()>>>(
        part.data_ptr<acc_t>(), d_first.data_ptr<int64_t>(), K, cin * cout, gw.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return gw;
}

TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) {
  m.impl("sparse_conv", &sparse_conv_cuda);
  m.impl("sparse_conv_weight_grad", &sparse_conv_weight_grad_cuda);
}

}  // namespace pcgrasp
