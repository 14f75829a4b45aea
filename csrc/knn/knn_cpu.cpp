#include "knn/knn.h"

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

namespace pcgrasp {

void knn_check_args(const at::Tensor& query, const at::Tensor& points,
                    const at::Tensor& query_lengths, const at::Tensor& lengths, int64_t k) {
  check_cloud(query, "query");
  check_cloud(points, "points");
  TORCH_CHECK(query.size(0) == points.size(0), "query and points must have the same batch size, got ",
              query.size(0), " and ", points.size(0));
  TORCH_CHECK(query.size(2) == points.size(2), "query and points must have the same D, got ",
              query.size(2), " and ", points.size(2));
  TORCH_CHECK(query.scalar_type() == points.scalar_type(), "query and points must have the same dtype");
  TORCH_CHECK(points.size(2) >= 1 && points.size(2) <= 8, "points must have 1 <= D <= 8");
  check_lengths(query_lengths, query.size(0), "query_lengths");
  check_lengths(lengths, points.size(0), "lengths");
  check_same_device(query, points, "query", "points");
  TORCH_CHECK(k >= 0, "k must be non-negative, got ", k);
}

namespace {

// Brute force over one cloud: the path for D != 3, small clouds and large k.
template <typename T>
void knn_brute(const T* P, int64_t n, int64_t D, const T* q, int64_t k, T* od, int64_t* oi,
               std::vector<std::pair<T, int64_t>>& scratch) {
  const int64_t cap = std::min(k, n);
  if (cap <= 0) return;
  if (cap <= 64) {
    int64_t size = 0;
    for (int64_t i = 0; i < n; ++i) size = sorted_insert(od, oi, size, cap, dist2_rn(P + i * D, q, D), i);
    return;
  }
  scratch.resize(n);
  for (int64_t i = 0; i < n; ++i) scratch[i] = {dist2_rn(P + i * D, q, D), i};
  std::partial_sort(scratch.begin(), scratch.begin() + cap, scratch.end());  // pair order = (d, idx)
  for (int64_t j = 0; j < cap; ++j) {
    od[j] = scratch[j].first;
    oi[j] = scratch[j].second;
  }
}

// Grid search: visit rings of cells around the query's cell until the k-th
// best distance is below the distance to every unvisited cell.
template <typename T>
void knn_grid(const Grid3<T>& g, int64_t n, const T* q, int64_t k, T* od, int64_t* oi) {
  const int64_t cap = std::min(k, n);
  if (cap <= 0) return;
  const double qd[3] = {double(q[0]), double(q[1]), double(q[2])};
  int64_t cq[3];
  for (int d = 0; d < 3; ++d) cq[d] = g.coord(qd[d], d);
  int64_t size = 0;
  for (int64_t r = 0;; ++r) {
    int64_t blo[3], bhi[3];
    bool covers = true;
    for (int d = 0; d < 3; ++d) {
      blo[d] = std::max<int64_t>(cq[d] - r, 0);
      bhi[d] = std::min<int64_t>(cq[d] + r, g.dims[d] - 1);
      covers = covers && blo[d] == 0 && bhi[d] == g.dims[d] - 1;
    }
    for (int64_t x = blo[0]; x <= bhi[0]; ++x) {
      const bool ex = std::llabs(x - cq[0]) == r;
      for (int64_t y = blo[1]; y <= bhi[1]; ++y) {
        const bool ey = ex || std::llabs(y - cq[1]) == r;
        for (int64_t z = blo[2]; z <= bhi[2]; ++z) {
          if (!ey && std::llabs(z - cq[2]) != r) {
            // interior of the ring: jump to the far face
            if (z < cq[2] + r) z = std::max(z, cq[2] + r - 1);
            continue;
          }
          const int64_t c = g.cell_id(x, y, z);
          for (int64_t j = g.cell_start[c]; j < g.cell_start[c + 1]; ++j)
            size = sorted_insert(od, oi, size, cap, dist2_rn(&g.xyz[j * 3], q, int64_t(3)), g.order[j]);
        }
      }
    }
    if (covers) break;
    if (size == cap) {
      const double bound = g.outside_bound(qd, blo, bhi);
      if (double(od[cap - 1]) * (1.0 + 1e-5) < bound * bound) break;
    }
  }
}

template <typename T>
void knn_impl(const at::Tensor& query, const at::Tensor& points, const int64_t* qlen,
              const int64_t* len, int64_t k, at::Tensor& dist, at::Tensor& idx) {
  const int64_t B = query.size(0), M = query.size(1), N = points.size(1), D = points.size(2);
  const T* Q = query.data_ptr<T>();
  const T* P = points.data_ptr<T>();
  T* od = dist.data_ptr<T>();
  int64_t* oi = idx.data_ptr<int64_t>();
  std::vector<Grid3<T>> grids(B);
  std::vector<char> use_grid(B, 0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = clamp_len(len[b], N);
    use_grid[b] = D == 3 && n >= 64 && k <= 128 && 4 * k < n && clamp_len(qlen[b], M) > 0;
  }
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      if (use_grid[b]) grids[b].build(P + b * N * 3, clamp_len(len[b], N), 0.0, 2.0);
  });
  at::parallel_for(0, B * M, 16, [&](int64_t s, int64_t e) {
    std::vector<std::pair<T, int64_t>> scratch;
    for (int64_t t = s; t < e; ++t) {
      const int64_t b = t / M, m = t % M;
      if (m >= clamp_len(qlen[b], M)) continue;
      const int64_t n = clamp_len(len[b], N);
      const T* q = Q + t * D;
      if (use_grid[b])
        knn_grid(grids[b], n, q, k, od + t * k, oi + t * k);
      else
        knn_brute(P + b * N * D, n, D, q, k, od + t * k, oi + t * k, scratch);
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& query_in, const at::Tensor& points_in,
                                           const at::Tensor& query_lengths,
                                           const at::Tensor& lengths, int64_t k) {
  knn_check_args(query_in, points_in, query_lengths, lengths, k);
  const at::Tensor query = to_compute(query_in), points = to_compute(points_in);
  const at::Tensor ql = query_lengths.contiguous(), l = lengths.contiguous();
  const int64_t B = query.size(0), M = query.size(1);
  at::Tensor dist = at::full({B, M, k}, std::numeric_limits<double>::infinity(), query.options());
  at::Tensor idx = at::full({B, M, k}, -1, query.options().dtype(at::kLong));
  if (B > 0 && M > 0 && k > 0) {
    AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "knn_cpu", [&] {
      knn_impl<scalar_t>(query, points, ql.data_ptr<int64_t>(), l.data_ptr<int64_t>(), k, dist, idx);
    });
  }
  return {dist.to(query_in.scalar_type()), idx};
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) { m.impl("knn", &knn_cpu); }

}  // namespace pcgrasp
