#include "fps/fps.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "common/checks.h"
#include "common/fp.h"

namespace pcgrasp {
namespace {

// Updates m[0, len) with the distance of each point to centre (cx, cy, cz)
// and returns the largest value. Selected points hold -1 and stay there.
// Plain loop with ternaries and separate restrict pointers so the compiler
// vectorises it (no FMA: -ffp-contract=off); the summation order matches
// dist2_rn exactly. GCC vectorises a float max-reduction only without signed
// zeros and non-finite values: distances are >= 0 or the -1 marker, inputs are
// checked finite, and mind starts at the largest finite value, not +inf.
template <typename T>
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-signed-zeros", "finite-math-only")))
#endif
__attribute__((noinline)) T update3(const T* __restrict x, const T* __restrict y,
                                    const T* __restrict z, T* __restrict m, int64_t len, T cx,
                                    T cy, T cz) {
  T best = T(-2);
  for (int64_t i = 0; i < len; ++i) {
    const T dx = x[i] - cx, dy = y[i] - cy, dz = z[i] - cz;
    T d = dx * dx;
    d = d + dy * dy;
    d = d + dz * dz;
    const T v = m[i] < d ? m[i] : d;
    m[i] = v;
    best = best < v ? v : best;
  }
  return best;
}

template <typename T>
T update_range(const T* soa, int64_t n, int64_t D, const T* c, T* mind, int64_t lo, int64_t hi) {
  if (D == 3)
    return update3(soa + lo, soa + n + lo, soa + 2 * n + lo, mind + lo, hi - lo, c[0], c[1], c[2]);
  T best = T(-2);
  for (int64_t i = lo; i < hi; ++i) {
    T d = T(0);
    for (int64_t k = 0; k < D; ++k) {
      const T diff = soa[k * n + i] - c[k];
      d = d + diff * diff;
    }
    const T v = mind[i] < d ? mind[i] : d;
    mind[i] = v;
    best = best < v ? v : best;
  }
  return best;
}

template <typename T>
int64_t first_equal(const T* mind, int64_t lo, int64_t hi, T v) {
  for (int64_t i = lo; i < hi; ++i)
    if (mind[i] == v) return i;
  return hi;  // unreachable when v came from this range
}

template <typename T>
void fps_cloud(const T* pts, int64_t n, int64_t D, int64_t m, int64_t start, int64_t* out,
               bool parallel) {
  if (m <= 0) return;
  std::vector<T> soa(n * D), mind(n, std::numeric_limits<T>::max());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < D; ++k) soa[k * n + i] = pts[i * D + k];
  int64_t sel = start;
  out[0] = sel;
  mind[sel] = T(-1);
  constexpr int64_t kChunk = 32768;
  const int64_t nchunks = (n + kChunk - 1) / kChunk;
  std::vector<T> cbest(nchunks);
  std::vector<int64_t> cidx(nchunks);
  T c[8];
  for (int64_t s = 1; s < m; ++s) {
    for (int64_t k = 0; k < D; ++k) c[k] = pts[sel * D + k];
    if (parallel && nchunks > 1) {
      at::parallel_for(0, nchunks, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t ch = b0; ch < b1; ++ch) {
          const int64_t lo = ch * kChunk, hi = std::min(n, lo + kChunk);
          cbest[ch] = update_range(soa.data(), n, D, c, mind.data(), lo, hi);
          cidx[ch] = first_equal(mind.data(), lo, hi, cbest[ch]);
        }
      });
      int64_t best_ch = 0;
      for (int64_t ch = 1; ch < nchunks; ++ch)
        if (cbest[ch] > cbest[best_ch]) best_ch = ch;  // strict: lowest chunk wins ties
      sel = cidx[best_ch];
    } else {
      const T best = update_range(soa.data(), n, D, c, mind.data(), 0, n);
      sel = first_equal(mind.data(), 0, n, best);
    }
    out[s] = sel;
    mind[sel] = T(-1);
  }
}

}  // namespace

void fps_check_start(const at::Tensor& start, const at::Tensor& lengths, int64_t N) {
  check_same_device(start, lengths, "start", "lengths");
  if (start.numel() == 0) return;
  const at::Tensor n = lengths.clamp(0, N);
  const at::Tensor bad = ((start < 0) | (start >= n)) & (n > 0);
  if (!bad.any().item<bool>()) return;  // the one sync on CUDA
  const int64_t b = bad.nonzero()[0][0].item<int64_t>();
  TORCH_CHECK_VALUE(false, "start[", b, "]=", start[b].item<int64_t>(), " is outside the cloud's ",
                    n[b].item<int64_t>(), " valid points");
}

at::Tensor farthest_point_sample_cpu(const at::Tensor& points_in, const at::Tensor& lengths_in,
                                     const at::Tensor& counts_in, const c10::optional<at::Tensor>& start_in,
                                     int64_t K) {
  check_cloud(points_in, "points");
  const int64_t B = points_in.size(0), N = points_in.size(1), D = points_in.size(2);
  check_lengths(lengths_in, B, "lengths");
  check_lengths(counts_in, B, "k");
  const bool given = start_in.has_value() && start_in->defined();
  if (given) {
    check_lengths(*start_in, B, "start");
    fps_check_start(*start_in, lengths_in, N);
  }
  TORCH_CHECK(K >= 0, "k must be non-negative, got ", K);
  TORCH_CHECK(D >= 1 && D <= 8, "points must have 1 <= D <= 8, got D=", D);
  const at::Tensor points = to_compute(points_in);
  const at::Tensor lengths = lengths_in.contiguous(), counts = counts_in.contiguous();
  const at::Tensor start = given ? start_in->contiguous() : at::zeros({B}, lengths.options());
  at::Tensor idx = at::full({B, K}, -1, points.options().dtype(at::kLong));
  if (B == 0 || K == 0) return idx;
  const int64_t* len = lengths.data_ptr<int64_t>();
  const int64_t* cnt = counts.data_ptr<int64_t>();
  const int64_t* st = start.data_ptr<int64_t>();
  int64_t* out = idx.data_ptr<int64_t>();
  // Many clouds: one cloud per task. Few clouds: parallelise inside each cloud.
  const bool inner = B < at::get_num_threads();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "farthest_point_sample_cpu", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    auto run = [&](int64_t b) {
      const int64_t n = clamp_len(len[b], N);
      const int64_t m = std::min(std::min(std::max<int64_t>(cnt[b], 0), K), n);
      fps_cloud<scalar_t>(p + b * N * D, n, D, m, st[b], out + b * K, inner);
    };
    if (inner) {
      for (int64_t b = 0; b < B; ++b) run(b);
    } else {
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) run(b);
      });
    }
  });
  return idx;
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) {
  m.impl("farthest_point_sample", &farthest_point_sample_cpu);
}

}  // namespace pcgrasp
