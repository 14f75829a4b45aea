// Sorted cell keys: a hash-free spatial index that works the same way on CPU
// and CUDA. Each point's cell (floor(x / cell) per axis, clamped to 21 bits) is
// packed into one int64 with z in the lowest bits; points are sorted by key per
// cloud. The 3 cells (z-1, z, z+1) of a neighbourhood column are then one
// contiguous key range, so a radius search is 9 binary searches. Clamping is
// monotone and moves cells at most together, so it costs speed, never results.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/fp.h"

namespace pcgrasp {

constexpr int64_t kCellBits = 21;
constexpr int64_t kCellHalf = int64_t(1) << (kCellBits - 1);  // 2^20
constexpr int64_t kInvalidKey = INT64_MAX;                     // padding sorts last

PCG_HD int64_t cell_of(double x, double inv_cell) {
  const double c = floor(x * inv_cell);
  if (!(c > -double(kCellHalf))) return -kCellHalf;  // also NaN
  if (c > double(kCellHalf - 1)) return kCellHalf - 1;
  return static_cast<int64_t>(c);
}

PCG_HD int64_t pack_cell(int64_t cx, int64_t cy, int64_t cz) {
  return ((cx + kCellHalf) << (2 * kCellBits)) | ((cy + kCellHalf) << kCellBits) | (cz + kCellHalf);
}

template <typename T>
PCG_HD int64_t cell_key(const T* w, double inv_cell) {
  return pack_cell(cell_of(double(w[0]), inv_cell), cell_of(double(w[1]), inv_cell),
                   cell_of(double(w[2]), inv_cell));
}

// First position in keys[0, n) whose key is >= k.
PCG_HD int64_t lower_bound_key(const int64_t* keys, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < k) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// w = R p + t for a row-major 4x4 rigid transform (top 3x4 used), every
// operation rounded on its own so both devices agree. T4 == nullptr: w = p.
template <typename T>
PCG_HD void apply_rigid(const T* T4, const T* p, T* w) {
  if (!T4) {
    w[0] = p[0]; w[1] = p[1]; w[2] = p[2];
    return;
  }
  for (int r = 0; r < 3; ++r) {
    T s = mul_rn(T4[r * 4 + 0], p[0]);
    s = add_rn(s, mul_rn(T4[r * 4 + 1], p[1]));
    s = add_rn(s, mul_rn(T4[r * 4 + 2], p[2]));
    w[r] = add_rn(s, T4[r * 4 + 3]);
  }
}

// First position in keys[0, n) whose key is > k (no k + 1: the largest
// clamped cell packs to INT64_MAX).
PCG_HD int64_t upper_bound_key(const int64_t* keys, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] <= k) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Calls f(pos) for every sorted position whose cell is within one cell of the
// query's cell: 9 column ranges of 3 cells each.
template <typename F>
PCG_HD void for_each_neighbor_cell(const int64_t* keys, int64_t n, int64_t cx, int64_t cy,
                                   int64_t cz, F&& f) {
  const int64_t z0 = cz > -kCellHalf ? cz - 1 : cz;
  const int64_t z1 = cz < kCellHalf - 1 ? cz + 1 : cz;
  for (int64_t dx = -1; dx <= 1; ++dx) {
    const int64_t x = cx + dx;
    if (x < -kCellHalf || x > kCellHalf - 1) continue;
    for (int64_t dy = -1; dy <= 1; ++dy) {
      const int64_t y = cy + dy;
      if (y < -kCellHalf || y > kCellHalf - 1) continue;
      const int64_t s = lower_bound_key(keys, n, pack_cell(x, y, z0));
      const int64_t e = upper_bound_key(keys, n, pack_cell(x, y, z1));
      for (int64_t pos = s; pos < e; ++pos) f(pos);
    }
  }
}

}  // namespace pcgrasp
