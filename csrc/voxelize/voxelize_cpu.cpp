// CPU voxelization: one pass computes every valid point's voxel and the
// coordinate range, a least-significant-digit radix sort orders the points by
// their packed (batch, x, y, z) key, and one scan over the sorted keys writes
// the unique rows, the inverse map and each voxel's lowest point index.
//
// The key packs each field into just the bits its range needs (b, then
// x - min x, y - min y, z - min z), so integer order is lexicographic order.
// The point's local index rides in the low bits of the same word: the sort
// moves 8 bytes per point, and since the points start in ascending index order
// and an LSD radix sort is stable, only the key's bits are sorted and equal
// keys stay in ascending index order, so the first point of a run is the
// voxel's lowest index. Where key and index do not fit 64 bits (coordinates
// spanning ~2^20 voxels per axis with many points), the sort-based ATen path
// (voxelize.cpp) runs instead: same results.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "common/checks.h"
#include "voxelize/voxelize.h"

namespace pcgrasp {
namespace {

inline int bit_width(uint64_t v) { return v == 0 ? 0 : 64 - __builtin_clzll(v); }

template <typename U>
std::unique_ptr<U[]> uninitialised(int64_t n) {
  return std::unique_ptr<U[]>(new U[static_cast<size_t>(std::max<int64_t>(n, 1))]);
}

// The T contiguous chunks a pass over n items is split into (fixed by n and the
// thread count, so the work each thread does, and any error it reports, is too).
struct Chunks {
  int64_t T, size;
  Chunks(int64_t n, int64_t grain) {
    T = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / grain));
    size = (n + T - 1) / T;
  }
};

// Sort v[0, n) by bits [lo, lo + width) of each word, stably: LSD radix passes of
// at most 11 bits, each pass split across threads (per-chunk histograms, each
// chunk scattering its items in order, so the pass stays stable). tmp: n words.
void radix_sort_bits(uint64_t*& v, uint64_t*& tmp, int64_t n, int lo, int width) {
  constexpr int kMaxDigit = 11;
  const int passes = (width + kMaxDigit - 1) / kMaxDigit;
  if (passes == 0 || n < 2) return;
  const int digit = (width + passes - 1) / passes;  // balanced digits: fewer buckets
  const int64_t buckets = int64_t(1) << digit;
  const uint64_t mask = uint64_t(buckets - 1);
  const Chunks ch(n, 1 << 15);
  std::vector<int64_t> count(static_cast<size_t>(ch.T * buckets));
  for (int p = 0; p < passes; ++p) {
    const int shift = lo + p * digit;
    std::fill(count.begin(), count.end(), 0);
    at::parallel_for(0, ch.T, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t* h = count.data() + c * buckets;
        const int64_t i1 = std::min(n, (c + 1) * ch.size);
        for (int64_t i = c * ch.size; i < i1; ++i) ++h[(v[i] >> shift) & mask];
      }
    });
    // exclusive offsets, bucket-major then chunk: chunk c's items of a bucket follow chunk c-1's
    int64_t sum = 0, largest = 0;
    for (int64_t k = 0; k < buckets; ++k) {
      int64_t in_bucket = 0;
      for (int64_t c = 0; c < ch.T; ++c) {
        const int64_t t = count[c * buckets + k];
        count[c * buckets + k] = sum;
        sum += t;
        in_bucket += t;
      }
      largest = std::max(largest, in_bucket);
    }
    if (largest == n) continue;  // one digit value: this pass would not move anything
    at::parallel_for(0, ch.T, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t* off = count.data() + c * buckets;
        const int64_t i1 = std::min(n, (c + 1) * ch.size);
        for (int64_t i = c * ch.size; i < i1; ++i) tmp[off[(v[i] >> shift) & mask]++] = v[i];
      }
    });
    std::swap(v, tmp);
  }
}

struct Range {
  int64_t lo[3], hi[3];
  int64_t bad = -1;  // the lowest local index whose quotient is out of int32 range (or NaN)
};

// floor(x / s) of a finite quotient inside [-2^31, 2^31): truncation, one down for a
// negative non-integer (trunc(q) is exactly representable in q's own type).
template <typename T>
inline bool floor_div_int32(T x, T s, int32_t& out) {
  const T q = x / s;
  if (!(q >= T(-2147483648.0) && q < T(2147483648.0))) return false;  // NaN fails too
  int64_t t = static_cast<int64_t>(q);
  t -= q < static_cast<T>(t);
  out = static_cast<int32_t>(t);
  return true;
}

template <typename T>
bool voxelize_radix(const at::Tensor& points, double voxel_size, const int64_t* len,
                    std::tuple<at::Tensor, at::Tensor, at::Tensor>& result) {
  const int64_t B = points.size(0), N = points.size(1);
  const T* p = points.data_ptr<T>();
  const T s = static_cast<T>(voxel_size);  // as the ATen path: the quotient in the compute dtype
  std::vector<int64_t> base(B + 1, 0);      // local index of each cloud's first valid point
  for (int64_t b = 0; b < B; ++b) base[b + 1] = base[b] + clamp_len(len[b], N);
  const int64_t nv = base[B];
  const auto lopt = points.options().dtype(at::kLong);
  at::Tensor inverse = at::empty({B * N}, lopt);
  int64_t* inv = inverse.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b)  // padding; the valid points are all written below
    std::fill(inv + b * N + (base[b + 1] - base[b]), inv + (b + 1) * N, int64_t(-1));
  if (nv == 0) {
    result = {at::empty({0, 4}, points.options().dtype(at::kInt)), inverse, at::empty({0}, lopt)};
    return true;
  }
  // Calls f(b, j0, j1) for the runs of local indices [j0, j1) inside cloud b that
  // make up [a, e): the points of a run are contiguous in memory.
  auto for_runs = [&](int64_t a, int64_t e, auto&& f) {
    int64_t b = std::upper_bound(base.begin(), base.end(), a) - base.begin() - 1;
    for (int64_t j = a; j < e; ++b) {
      const int64_t k = std::min(e, base[b + 1]);
      if (k > j) f(b, j, k);
      j = std::max(j, k);
    }
  };
  // pass 1: voxel coordinates (int32) and their range
  auto cell = uninitialised<int32_t>(3 * nv);
  const Chunks ch(nv, 4096);
  std::vector<Range> ranges(ch.T);
  at::parallel_for(0, ch.T, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      Range& r = ranges[g];
      int32_t lo[3], hi[3];
      for (int d = 0; d < 3; ++d) {
        lo[d] = std::numeric_limits<int32_t>::max();
        hi[d] = std::numeric_limits<int32_t>::min();
      }
      for_runs(g * ch.size, std::min(nv, (g + 1) * ch.size), [&](int64_t b, int64_t j0, int64_t j1) {
        const T* q = p + (b * N + (j0 - base[b])) * 3;
        int32_t* c = cell.get() + 3 * j0;
        bool ok = true;
        for (int64_t t = 0; t < 3 * (j1 - j0); ++t) ok &= floor_div_int32(q[t], s, c[t]);
        if (!ok && r.bad < 0) {
          for (int64_t t = 0; t < 3 * (j1 - j0) && r.bad < 0; ++t)
            if (!floor_div_int32(q[t], s, c[t])) r.bad = j0 + t / 3;
        }
        for (int64_t t = 0; t < j1 - j0; ++t)
          for (int d = 0; d < 3; ++d) {
            lo[d] = std::min(lo[d], c[3 * t + d]);
            hi[d] = std::max(hi[d], c[3 * t + d]);
          }
      });
      for (int d = 0; d < 3; ++d) {
        r.lo[d] = lo[d];
        r.hi[d] = hi[d];
      }
    }
  });
  int64_t lo[3], hi[3];
  for (int d = 0; d < 3; ++d) {
    lo[d] = std::numeric_limits<int64_t>::max();
    hi[d] = std::numeric_limits<int64_t>::min();
  }
  for (const Range& r : ranges) {
    if (r.bad >= 0) {  // the lowest bad index of the lowest chunk that has one: the lowest overall
      const int64_t j = r.bad;
      const int64_t b = std::upper_bound(base.begin(), base.end(), j) - base.begin() - 1;
      const T* q = p + (b * N + (j - base[b])) * 3;
      for (int d = 0; d < 3; ++d) {
        const double c = std::floor(static_cast<double>(q[d] / s));
        TORCH_CHECK_VALUE(!std::isnan(c), "points must be finite: floor(points / voxel_size) is NaN at cloud ", b,
                          ", point ", j - base[b]);
        TORCH_CHECK_VALUE(c >= -2147483648.0 && c <= 2147483647.0,
                          "voxel coordinates overflow int32: floor(points / voxel_size) = ", c,
                          " is outside [-2^31, 2^31 - 1]; use a larger voxel_size or recentre the points");
      }
    }
    for (int d = 0; d < 3; ++d) {
      lo[d] = std::min(lo[d], r.lo[d]);
      hi[d] = std::max(hi[d], r.hi[d]);
    }
  }
  // bit fields: z lowest, then y, x, batch; the local index below them all
  int w[3], sh[3];
  for (int d = 0; d < 3; ++d) w[d] = bit_width(static_cast<uint64_t>(hi[d] - lo[d]));
  const int wb = bit_width(static_cast<uint64_t>(B - 1));
  sh[2] = 0;
  sh[1] = w[2];
  sh[0] = w[2] + w[1];
  const int sb = sh[0] + w[0], key_bits = sb + wb;
  const int idx_bits = bit_width(static_cast<uint64_t>(nv - 1));
  if (key_bits + idx_bits > 64) return false;
  auto v_buf = uninitialised<uint64_t>(nv), tmp_buf = uninitialised<uint64_t>(nv);
  uint64_t* v = v_buf.get();
  uint64_t* tmp = tmp_buf.get();
  at::parallel_for(0, ch.T, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g)
      for_runs(g * ch.size, std::min(nv, (g + 1) * ch.size), [&](int64_t b, int64_t j0, int64_t j1) {
        const uint64_t kb = static_cast<uint64_t>(b) << sb;
        for (int64_t j = j0; j < j1; ++j) {
          const int32_t* c = cell.get() + 3 * j;
          uint64_t key = kb;
          for (int d = 0; d < 3; ++d) key |= static_cast<uint64_t>(int64_t(c[d]) - lo[d]) << sh[d];
          v[j] = (key << idx_bits) | static_cast<uint64_t>(j);
        }
      });
  });
  cell.reset();
  radix_sort_bits(v, tmp, nv, idx_bits, key_bits);
  // voxels: a run of equal keys. Count per chunk, then each chunk numbers its own
  // runs from its offset and writes its rows and its points' inverse entries.
  const uint64_t idx_mask = idx_bits == 0 ? 0 : (~uint64_t(0) >> (64 - idx_bits));
  std::vector<int64_t> starts(ch.T + 1, 0);
  at::parallel_for(0, ch.T, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      int64_t k = 0;
      const int64_t t1 = std::min(nv, (g + 1) * ch.size);
      for (int64_t t = g * ch.size; t < t1; ++t) k += t == 0 || (v[t] >> idx_bits) != (v[t - 1] >> idx_bits);
      starts[g + 1] = k;
    }
  });
  for (int64_t g = 0; g < ch.T; ++g) starts[g + 1] += starts[g];
  const int64_t V = starts[ch.T];
  at::Tensor coords = at::empty({V, 4}, points.options().dtype(at::kInt));
  at::Tensor first = at::empty({V}, lopt);
  int32_t* co = coords.data_ptr<int32_t>();
  int64_t* fi = first.data_ptr<int64_t>();
  at::parallel_for(0, ch.T, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      int64_t vox = starts[g] - 1;
      const int64_t t1 = std::min(nv, (g + 1) * ch.size);
      for (int64_t t = g * ch.size; t < t1; ++t) {
        const uint64_t key = v[t] >> idx_bits;
        const int64_t j = static_cast<int64_t>(v[t] & idx_mask);
        const int64_t b = static_cast<int64_t>(key >> sb);
        const int64_t flat = b * N + (j - base[b]);
        if (t == 0 || key != (v[t - 1] >> idx_bits)) {
          ++vox;
          int32_t* row = co + 4 * vox;
          row[0] = static_cast<int32_t>(b);
          for (int d = 0; d < 3; ++d)
            row[d + 1] = static_cast<int32_t>(static_cast<int64_t>((key >> sh[d]) & ((uint64_t(1) << w[d]) - 1)) + lo[d]);
          fi[vox] = flat;  // the lowest: equal keys keep ascending index order
        }
        inv[flat] = vox;
      }
    }
  });
  result = {coords, inverse, first};
  return true;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> voxelize_cpu(const at::Tensor& points_in, double voxel_size,
                                                            const at::Tensor& lengths_in) {
  check_cloud(points_in, "points");
  TORCH_CHECK(points_in.size(2) == 3, "points must have shape [B, N, 3], got ", points_in.sizes());
  check_lengths(lengths_in, points_in.size(0), "lengths");
  check_same_device(points_in, lengths_in, "points", "lengths");
  TORCH_CHECK(voxel_size > 0 && std::isfinite(voxel_size), "voxel_size must be positive and finite, got ",
              voxel_size);
  const at::Tensor points = to_compute(points_in);
  const at::Tensor lengths = lengths_in.contiguous();
  std::tuple<at::Tensor, at::Tensor, at::Tensor> result;
  bool done = false;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "voxelize_cpu", [&] {
    done = voxelize_radix<scalar_t>(points, voxel_size, lengths.data_ptr<int64_t>(), result);
  });
  if (!done) return voxelize_sorted(points_in, voxel_size, lengths_in);
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) { m.impl("voxelize", &voxelize_cpu); }

}  // namespace pcgrasp
