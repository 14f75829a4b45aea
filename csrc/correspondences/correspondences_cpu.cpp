#include "correspondences/correspondences.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "common/cellkeys.h"
#include "common/checks.h"
#include "common/fp.h"
#include "common/grid.h"

namespace pcgrasp {

std::tuple<at::Tensor, at::Tensor> correspondences_check_args(
    const at::Tensor& src, const at::Tensor& dst, const at::Tensor& src_lengths,
    const at::Tensor& dst_lengths, const c10::optional<at::Tensor>& src_transform,
    const c10::optional<at::Tensor>& dst_transform, double radius, at::ScalarType compute) {
  check_cloud(src, "src");
  check_cloud(dst, "dst");
  TORCH_CHECK(src.size(2) == 3 && dst.size(2) == 3, "src and dst must have D = 3");
  TORCH_CHECK(src.size(0) == dst.size(0), "src and dst must have the same batch size");
  TORCH_CHECK(src.scalar_type() == dst.scalar_type(), "src and dst must have the same dtype");
  check_same_device(src, dst, "src", "dst");
  check_lengths(src_lengths, src.size(0), "src_lengths");
  check_lengths(dst_lengths, dst.size(0), "dst_lengths");
  check_same_device(src, src_lengths, "src", "src_lengths");
  check_same_device(dst, dst_lengths, "dst", "dst_lengths");
  TORCH_CHECK(radius >= 0, "radius must be non-negative, got ", radius);
  const int64_t B = src.size(0);
  auto transform = [&](const c10::optional<at::Tensor>& T, const at::Tensor& pts, const char* name) {
    if (!T.has_value() || !T->defined()) return at::Tensor();
    TORCH_CHECK(T->dim() == 3 && T->size(0) == B && T->size(1) == 4 && T->size(2) == 4, name,
                " must have shape [B, 4, 4], got ", T->sizes());
    check_same_device(pts, *T, "its points", name);
    return T->to(compute).contiguous();
  };
  const at::Tensor ts = transform(src_transform, src, "src_transform");
  const at::Tensor td = transform(dst_transform, dst, "dst_transform");
  return {ts, td};
}

namespace {

template <typename T>
struct Views {
  const T *S, *D, *TS, *TD;
  const int64_t *sl, *dl;
  int64_t B, N, M;
  T r2;
  double radius;
  std::vector<Grid3<T>> grids;  // dst of each cloud in world coordinates

  Views(const at::Tensor& src, const at::Tensor& dst, const at::Tensor& sl_, const at::Tensor& dl_,
        const at::Tensor& ts, const at::Tensor& td, double radius)
      : S(src.data_ptr<T>()), D(dst.data_ptr<T>()), TS(ts.defined() ? ts.data_ptr<T>() : nullptr),
        TD(td.defined() ? td.data_ptr<T>() : nullptr), sl(sl_.data_ptr<int64_t>()),
        dl(dl_.data_ptr<int64_t>()), B(src.size(0)), N(src.size(1)), M(dst.size(1)),
        r2(static_cast<T>(radius * radius)), radius(radius), grids(B) {
    // The CPU uses a dense uniform grid (O(1) cell lookup); the CUDA kernels
    // use sorted cell keys (common/cellkeys.h). Both return the exact answer.
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<T> w;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t n = clamp_len(dl[b], M);
        w.resize(n * 3);
        for (int64_t j = 0; j < n; ++j) apply_rigid(TD ? TD + b * 16 : nullptr, D + (b * M + j) * 3, &w[j * 3]);
        grids[b].build(w.data(), n, radius);
      }
    });
  }

  // Calls f(j, d2) for every dst point j of cloud b within the radius of src i.
  template <typename F>
  void neighbours(int64_t b, int64_t i, F&& f) const {
    if (!(r2 > T(0))) return;
    T w[3];
    apply_rigid(TS ? TS + b * 16 : nullptr, S + (b * N + i) * 3, w);
    const Grid3<T>& g = grids[b];
    const double q[3] = {double(w[0]), double(w[1]), double(w[2])};
    g.for_each_in_box(q, radius, [&](int64_t pos) {
      const T d = dist2_rn(&g.xyz[pos * 3], w, int64_t(3));
      if (d < r2) f(g.order[pos], d);
    });
  }
};

}  // namespace

std::tuple<at::Tensor, at::Tensor> correspondences_cpu(
    const at::Tensor& src_in, const at::Tensor& dst_in, const at::Tensor& src_lengths,
    const at::Tensor& dst_lengths, const c10::optional<at::Tensor>& src_transform,
    const c10::optional<at::Tensor>& dst_transform, double radius) {
  const at::Tensor src = to_compute(src_in), dst = to_compute(dst_in);
  auto [ts, td] = correspondences_check_args(src_in, dst_in, src_lengths, dst_lengths, src_transform,
                                             dst_transform, radius, src.scalar_type());
  const at::Tensor sl = src_lengths.contiguous(), dl = dst_lengths.contiguous();
  const int64_t B = src.size(0), N = src.size(1);
  at::Tensor idx = at::full({B, N}, -1, src.options().dtype(at::kLong));
  at::Tensor dist = at::full({B, N}, std::numeric_limits<double>::infinity(), src.options());
  if (B * N == 0) return {idx, dist.to(src_in.scalar_type())};
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "correspondences_cpu", [&] {
    Views<scalar_t> v(src, dst, sl, dl, ts, td, radius);
    int64_t* oi = idx.data_ptr<int64_t>();
    scalar_t* od = dist.data_ptr<scalar_t>();
    at::parallel_for(0, B * N, 256, [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const int64_t b = t / N, i = t % N;
        if (i >= clamp_len(v.sl[b], N)) continue;
        scalar_t bd = std::numeric_limits<scalar_t>::infinity();
        int64_t bj = -1;
        v.neighbours(b, i, [&](int64_t j, scalar_t d) {
          if (bj < 0 || before(d, j, bd, bj)) {
            bd = d;
            bj = j;
          }
        });
        oi[t] = bj;
        od[t] = bd;
      }
    });
  });
  return {idx, dist.to(src_in.scalar_type())};
}

at::Tensor radius_pairs_cpu(const at::Tensor& src_in, const at::Tensor& dst_in,
                            const at::Tensor& src_lengths, const at::Tensor& dst_lengths,
                            const c10::optional<at::Tensor>& src_transform,
                            const c10::optional<at::Tensor>& dst_transform, double radius,
                            int64_t max_pairs) {
  const at::Tensor src = to_compute(src_in), dst = to_compute(dst_in);
  auto [ts, td] = correspondences_check_args(src_in, dst_in, src_lengths, dst_lengths, src_transform,
                                             dst_transform, radius, src.scalar_type());
  const at::Tensor sl = src_lengths.contiguous(), dl = dst_lengths.contiguous();
  const int64_t B = src.size(0), N = src.size(1);
  const int64_t T = B * N;
  constexpr int64_t kChunk = 1024;
  const int64_t nchunks = (T + kChunk - 1) / kChunk;
  std::vector<std::vector<int64_t>> out(nchunks);  // flattened (b, i, j) triples per chunk
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "radius_pairs_cpu", [&] {
    Views<scalar_t> v(src, dst, sl, dl, ts, td, radius);
    at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
      std::vector<std::pair<scalar_t, int64_t>> hits;
      for (int64_t ch = c0; ch < c1; ++ch) {
        for (int64_t t = ch * kChunk; t < std::min(T, (ch + 1) * kChunk); ++t) {
          const int64_t b = t / N, i = t % N;
          if (i >= clamp_len(v.sl[b], N)) continue;
          hits.clear();
          v.neighbours(b, i, [&](int64_t j, scalar_t d) { hits.emplace_back(d, j); });
          if (max_pairs > 0 && static_cast<int64_t>(hits.size()) > max_pairs) {
            std::nth_element(hits.begin(), hits.begin() + max_pairs, hits.end());  // (d, j) order
            hits.resize(max_pairs);
          }
          std::sort(hits.begin(), hits.end(), [](const auto& a, const auto& c) { return a.second < c.second; });
          for (const auto& h : hits) out[ch].insert(out[ch].end(), {b, i, h.second});
        }
      }
    });
  });
  int64_t P = 0;
  for (const auto& o : out) P += static_cast<int64_t>(o.size()) / 3;
  at::Tensor pairs = at::empty({P, 3}, src.options().dtype(at::kLong));
  int64_t* op = pairs.data_ptr<int64_t>();
  for (const auto& o : out) op = std::copy(o.begin(), o.end(), op);
  return pairs;
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) {
  m.impl("correspondences", &correspondences_cpu);
  m.impl("radius_pairs", &radius_pairs_cpu);
}

}  // namespace pcgrasp
