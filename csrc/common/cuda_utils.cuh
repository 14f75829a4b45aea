// Helpers shared by the CUDA kernels: launch geometry, stream, block reductions.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>

namespace pcgrasp {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid size for a grid-stride loop over `n` items, capped so it always fits.
inline unsigned int grid_for(int64_t n, int threads) {
  const int64_t g = ceil_div(n > 0 ? n : 1, threads);
  return static_cast<unsigned int>(g < 65535 * 32 ? g : 65535 * 32);
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Keeps (v, i) with the larger v; ties go to the lower index.
template <typename T>
__device__ __forceinline__ void argmax_merge(T& v, int64_t& i, T ov, int64_t oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

// Block-wide argmax with ties to the lower index. Every thread gets the result.
// Requires blockDim.x to be a multiple of 32 and at most 1024.
template <typename T>
__device__ void block_argmax(T& v, int64_t& i) {
  __shared__ T sv[32];
  __shared__ int64_t si[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int off = 16; off > 0; off >>= 1) {
    const T ov = __shfl_down_sync(0xffffffffu, v, off);
    const int64_t oi = __shfl_down_sync(0xffffffffu, i, off);
    argmax_merge(v, i, ov, oi);
  }
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = i;
  }
  __syncthreads();
  const int nwarps = blockDim.x >> 5;
  if (warp == 0) {
    v = lane < nwarps ? sv[lane] : sv[0];
    i = lane < nwarps ? si[lane] : si[0];
    for (int off = 16; off > 0; off >>= 1) {
      const T ov = __shfl_down_sync(0xffffffffu, v, off);
      const int64_t oi = __shfl_down_sync(0xffffffffu, i, off);
      argmax_merge(v, i, ov, oi);
    }
    __syncwarp();  // every lane has read sv/si before lane 0 overwrites sv[0]
    if (lane == 0) {
      sv[0] = v;
      si[0] = i;
    }
  }
  __syncthreads();
  v = sv[0];
  i = si[0];
  __syncthreads();  // sv/si may be reused by the next call
}

}  // namespace pcgrasp
