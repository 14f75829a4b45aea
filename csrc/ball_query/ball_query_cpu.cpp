#include "ball_query/ball_query.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "common/checks.h"
#include "common/fp.h"
#include "common/grid.h"
#include "knn/knn.h"

namespace pcgrasp {
namespace {

template <typename T>
using Hits = std::vector<std::pair<T, int64_t>>;

// Keeps the k hits to return, in output order, and writes them.
template <typename T>
int64_t select_hits(Hits<T>& hits, int64_t k, bool nearest, T* od, int64_t* oi) {
  const int64_t c = std::min<int64_t>(k, hits.size());
  if (nearest) {
    std::partial_sort(hits.begin(), hits.begin() + c, hits.end());
  } else {
    std::partial_sort(hits.begin(), hits.begin() + c, hits.end(),
                      [](const auto& a, const auto& b) { return a.second < b.second; });
  }
  for (int64_t j = 0; j < c; ++j) {
    od[j] = hits[j].first;
    oi[j] = hits[j].second;
  }
  return c;
}

template <typename T>
void ball_impl(const at::Tensor& query, const at::Tensor& points, const int64_t* qlen,
               const int64_t* len, double radius, int64_t k, bool nearest, at::Tensor& idx,
               at::Tensor& dist, at::Tensor& count) {
  const int64_t B = query.size(0), M = query.size(1), N = points.size(1), D = points.size(2);
  const T* Q = query.data_ptr<T>();
  const T* P = points.data_ptr<T>();
  T* od = dist.data_ptr<T>();
  int64_t* oi = idx.data_ptr<int64_t>();
  int64_t* oc = count.data_ptr<int64_t>();
  const T r2 = static_cast<T>(radius * radius);
  std::vector<Grid3<T>> grids(B);
  std::vector<char> use_grid(B, 0);
  for (int64_t b = 0; b < B; ++b)
    use_grid[b] = D == 3 && clamp_len(len[b], N) >= 32 && clamp_len(qlen[b], M) > 0 && r2 > T(0);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      if (use_grid[b]) grids[b].build(P + b * N * 3, clamp_len(len[b], N), radius);
  });
  at::parallel_for(0, B * M, 16, [&](int64_t s, int64_t e) {
    Hits<T> hits;
    for (int64_t t = s; t < e; ++t) {
      const int64_t b = t / M, m = t % M;
      if (m >= clamp_len(qlen[b], M) || !(r2 > T(0))) continue;
      const int64_t n = clamp_len(len[b], N);
      const T* q = Q + t * D;
      T* d_out = od + t * k;
      int64_t* i_out = oi + t * k;
      if (use_grid[b]) {
        const Grid3<T>& g = grids[b];
        const double qd[3] = {double(q[0]), double(q[1]), double(q[2])};
        hits.clear();
        g.for_each_in_box(qd, radius, [&](int64_t j) {
          const T d = dist2_rn(&g.xyz[j * 3], q, int64_t(3));
          if (d < r2) hits.emplace_back(d, g.order[j]);
        });
        oc[t] = select_hits(hits, k, nearest, d_out, i_out);
      } else if (!nearest) {
        // index order scan: stop at the k-th hit
        int64_t c = 0;
        for (int64_t i = 0; i < n && c < k; ++i) {
          const T d = dist2_rn(P + (b * N + i) * D, q, D);
          if (d < r2) {
            d_out[c] = d;
            i_out[c++] = i;
          }
        }
        oc[t] = c;
      } else {
        int64_t c = 0;
        for (int64_t i = 0; i < n; ++i) {
          const T d = dist2_rn(P + (b * N + i) * D, q, D);
          if (d < r2) c = sorted_insert(d_out, i_out, c, k, d, i);
        }
        oc[t] = c;
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> ball_query_cpu(
    const at::Tensor& query_in, const at::Tensor& points_in, const at::Tensor& query_lengths,
    const at::Tensor& lengths, double radius, int64_t k, bool nearest) {
  knn_check_args(query_in, points_in, query_lengths, lengths, k);
  TORCH_CHECK(radius >= 0, "radius must be non-negative, got ", radius);
  const at::Tensor query = to_compute(query_in), points = to_compute(points_in);
  const at::Tensor ql = query_lengths.contiguous(), l = lengths.contiguous();
  const int64_t B = query.size(0), M = query.size(1);
  at::Tensor idx = at::full({B, M, k}, -1, query.options().dtype(at::kLong));
  at::Tensor dist = at::full({B, M, k}, std::numeric_limits<double>::infinity(), query.options());
  at::Tensor count = at::zeros({B, M}, query.options().dtype(at::kLong));
  if (B > 0 && M > 0 && k > 0) {
    AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "ball_query_cpu", [&] {
      ball_impl<scalar_t>(query, points, ql.data_ptr<int64_t>(), l.data_ptr<int64_t>(), radius, k,
                          nearest, idx, dist, count);
    });
  }
  return {dist.to(query_in.scalar_type()), idx, count};
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) { m.impl("ball_query", &ball_query_cpu); }

}  // namespace pcgrasp
