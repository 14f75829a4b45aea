// Shared pieces of the brute-force CUDA neighbour kernels (kNN, ball query):
// one thread per query, the cloud streamed through shared memory in tiles.
#pragma once

#include <cstdint>

#include "common/cuda_utils.cuh"

namespace pcgrasp {

constexpr int kNbrThreads = 256;
constexpr int kNbrTile = 256;

// Copies points [t0, t0 + cnt) of one cloud (row stride D) into the tile.
template <typename T>
__device__ __forceinline__ void load_tile(T* tile, const T* __restrict__ P, int64_t t0,
                                          int64_t cnt, int64_t D) {
  const int64_t total = cnt * D;
  const T* src = P + t0 * D;
  for (int64_t j = threadIdx.x; j < total; j += blockDim.x) tile[j] = src[j];
}

// Clouds go in grid.y, whose limit is 65535: launch(grid, b0) runs once per
// chunk of at most that many clouds, the kernel reading cloud b0 + blockIdx.y.
template <typename F>
inline void for_each_cloud_chunk(int64_t B, int64_t M, F&& launch) {
  constexpr int64_t kMaxGridY = 65535;
  const auto gx = static_cast<unsigned int>(ceil_div(M, kNbrThreads));
  for (int64_t b0 = 0; b0 < B; b0 += kMaxGridY) {
    const int64_t nb = B - b0 < kMaxGridY ? B - b0 : kMaxGridY;
    launch(dim3(gx, static_cast<unsigned int>(nb)), b0);
  }
}

// Launches kernel<T, KMAX> with the smallest register-resident list that holds
// k entries, or KMAX = 0 (the list lives in the output rows) for larger k.
#define PCG_DISPATCH_KMAX(k, ...)            \
  [&] {                                      \
    if ((k) <= 4) {                          \
      constexpr int KMAX = 4;                \
      return __VA_ARGS__();                  \
    } else if ((k) <= 16) {                  \
      constexpr int KMAX = 16;               \
      return __VA_ARGS__();                  \
    } else if ((k) <= 32) {                  \
      constexpr int KMAX = 32;               \
      return __VA_ARGS__();                  \
    } else if ((k) <= 64) {                  \
      constexpr int KMAX = 64;               \
      return __VA_ARGS__();                  \
    } else {                                 \
      constexpr int KMAX = 0;                \
      return __VA_ARGS__();                  \
    }                                        \
  }()

}  // namespace pcgrasp
