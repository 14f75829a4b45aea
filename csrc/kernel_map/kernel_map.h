// Kernel maps and coordinate downsampling for sparse convolution
// (MinkowskiEngine 0.5.4 conventions), integer work only.
//
// Coordinates are [N, 4] int32 rows (batch, x, y, z) in voxel units.
//
// kernel_map(in_coords [N, 4], out_coords [M, 4], kernel_size [3], dilation [3], tensor_stride [3])
//   -> (in_idx [P] int64, out_idx [P] int64, counts [K] int64), K = prod(kernel_size)
//   every pair (i, o) with in_coords[i] == out_coords[o] + offset_k, grouped by offset k
//   (counts[k] pairs each), then ordered by o, then i. Offset k enumerates x fastest, then y,
//   then z; per axis, odd K: (a - K/2) * dilation * tensor_stride, even K: a * tensor_stride
//   (not centred), a = 0..K-1. The batch column must match exactly.
// downsample_coords(coords [N, 4], stride [3]) -> (out [V, 4] int32, inverse [N] int64)
//   out: the unique rows (b, floor(x / s) * s, ...), sorted lexicographically; inverse: the out
//   row of every input row.
//
// CPU: when the input rows' column spans fit 62 bits together (any real scene), each row is packed
// into one int64 key (column order kept, so key order is lexicographic order), the keys are
// sorted stably and hashed, and every (output row, offset) query is one hash lookup; otherwise,
// and on CUDA, the rows are sorted lexicographically (stable LSD sorts; common/cellkeys.h clamps
// its 21-bit cells, fine for a radius search but not for exact lookups) and every query is a
// binary search: O((N + K M) log N), never all pairs. Offsets are added in int64, so queries that
// leave the int32 range (or the packed box) simply match nothing.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>
#include <vector>

#include "common/fp.h"

namespace pcgrasp {

std::tuple<at::Tensor, at::Tensor, at::Tensor> kernel_map_cpu(const at::Tensor& in_coords,
                                                              const at::Tensor& out_coords,
                                                              at::IntArrayRef kernel_size,
                                                              at::IntArrayRef dilation,
                                                              at::IntArrayRef tensor_stride);
std::tuple<at::Tensor, at::Tensor, at::Tensor> kernel_map_cuda(const at::Tensor& in_coords,
                                                               const at::Tensor& out_coords,
                                                               at::IntArrayRef kernel_size,
                                                               at::IntArrayRef dilation,
                                                               at::IntArrayRef tensor_stride);
// ATen only: the same code on both devices.
std::tuple<at::Tensor, at::Tensor> downsample_coords(const at::Tensor& coords, at::IntArrayRef stride);

// Shared by both devices: argument checks; the lexicographic order of the rows of an [N, 4]
// integer tensor (stable: equal rows keep index order); the per-axis offsets (int64 [K, 3]).
void kernel_map_check_args(const at::Tensor& in_coords, const at::Tensor& out_coords,
                           at::IntArrayRef kernel_size, at::IntArrayRef dilation,
                           at::IntArrayRef tensor_stride);
at::Tensor lexsort_rows(const at::Tensor& rows);
std::vector<int64_t> kernel_offsets(at::IntArrayRef kernel_size, at::IntArrayRef dilation,
                                    at::IntArrayRef tensor_stride);

// Lexicographic comparison of row a (int32[4]) with the query q (int64[4]).
PCG_HD int compare_row(const int32_t* a, const int64_t* q) {
  for (int d = 0; d < 4; ++d) {
    const int64_t v = a[d];
    if (v < q[d]) return -1;
    if (v > q[d]) return 1;
  }
  return 0;
}

// [first, last) positions of q in the n sorted rows.
PCG_HD void equal_range_row(const int32_t* rows, int64_t n, const int64_t* q, int64_t& first,
                            int64_t& last) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (compare_row(rows + mid * 4, q) < 0) lo = mid + 1; else hi = mid;
  }
  first = lo;
  hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (compare_row(rows + mid * 4, q) <= 0) lo = mid + 1; else hi = mid;
  }
  last = lo;
}

// The query row out + offset; false when it leaves the int32 range (it can match nothing).
PCG_HD bool shifted_row(const int32_t* out, const int64_t* off, int64_t* q) {
  q[0] = out[0];
  for (int d = 0; d < 3; ++d) {
    q[d + 1] = int64_t(out[d + 1]) + off[d];
    if (q[d + 1] < INT32_MIN || q[d + 1] > INT32_MAX) return false;
  }
  return true;
}

}  // namespace pcgrasp
