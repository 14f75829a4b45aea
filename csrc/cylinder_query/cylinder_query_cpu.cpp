#include "cylinder_query/cylinder_query.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "common/checks.h"
#include "common/grid.h"

namespace pcgrasp {
namespace {

// Frobenius norm of the inverse of a row-major 3x3 matrix (+inf when singular).
template <typename T>
double inverse_frobenius(const T* R) {
  double m[9];
  for (int i = 0; i < 9; ++i) m[i] = double(R[i]);
  const double c00 = m[4] * m[8] - m[5] * m[7], c01 = m[5] * m[6] - m[3] * m[8], c02 = m[3] * m[7] - m[4] * m[6];
  const double c10 = m[2] * m[7] - m[1] * m[8], c11 = m[0] * m[8] - m[2] * m[6], c12 = m[1] * m[6] - m[0] * m[7];
  const double c20 = m[1] * m[5] - m[2] * m[4], c21 = m[2] * m[3] - m[0] * m[5], c22 = m[0] * m[4] - m[1] * m[3];
  const double det = m[0] * c00 + m[1] * c01 + m[2] * c02;
  const double adj2 = c00 * c00 + c01 * c01 + c02 * c02 + c10 * c10 + c11 * c11 + c12 * c12 + c20 * c20 +
                      c21 * c21 + c22 * c22;
  if (!(std::abs(det) > 0)) return std::numeric_limits<double>::infinity();
  return std::sqrt(adj2) / std::abs(det);
}

}  // namespace

void cylinder_query_check_args(const at::Tensor& query, const at::Tensor& rotation,
                               const at::Tensor& points, const at::Tensor& query_lengths,
                               const at::Tensor& lengths, double radius, double hmin, double hmax,
                               int64_t k) {
  check_cloud(query, "query");
  check_cloud(points, "points");
  TORCH_CHECK(query.size(2) == 3 && points.size(2) == 3, "query and points must have D = 3");
  TORCH_CHECK(query.size(0) == points.size(0), "query and points must have the same batch size");
  TORCH_CHECK(query.scalar_type() == points.scalar_type(), "query and points must have the same dtype");
  TORCH_CHECK(rotation.dim() == 4 && rotation.size(0) == query.size(0) && rotation.size(1) == query.size(1) &&
                  rotation.size(2) == 3 && rotation.size(3) == 3,
              "rotation must have shape [B, M, 3, 3], got ", rotation.sizes());
  check_same_device(query, points, "query", "points");
  check_same_device(query, rotation, "query", "rotation");
  check_lengths(query_lengths, query.size(0), "query_lengths");
  check_lengths(lengths, points.size(0), "lengths");
  TORCH_CHECK(radius >= 0, "radius must be non-negative, got ", radius);
  TORCH_CHECK(hmin <= hmax, "hmin must not exceed hmax, got ", hmin, " > ", hmax);
  TORCH_CHECK(k >= 0, "k must be non-negative, got ", k);
}

std::tuple<at::Tensor, at::Tensor> cylinder_query_cpu(
    const at::Tensor& query_in, const at::Tensor& rotation_in, const at::Tensor& points_in,
    const at::Tensor& query_lengths, const at::Tensor& lengths, double radius, double hmin,
    double hmax, int64_t k, bool nearest) {
  cylinder_query_check_args(query_in, rotation_in, points_in, query_lengths, lengths, radius, hmin, hmax, k);
  const at::Tensor query = to_compute(query_in), points = to_compute(points_in);
  const at::Tensor rotation = rotation_in.to(query.scalar_type()).contiguous();
  const at::Tensor ql = query_lengths.contiguous(), l = lengths.contiguous();
  const int64_t B = query.size(0), M = query.size(1), N = points.size(1);
  at::Tensor idx = at::full({B, M, k}, -1, query.options().dtype(at::kLong));
  at::Tensor count = at::zeros({B, M}, query.options().dtype(at::kLong));
  if (B * M == 0 || k == 0) return {idx, count};
  // every inside point has |q| <= reach, q = R^T (p - c)
  const double reach = std::sqrt(radius * radius + std::max(hmin * hmin, hmax * hmax));
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "cylinder_query_cpu", [&] {
    using T = scalar_t;
    const T* Q = query.data_ptr<T>();
    const T* R = rotation.data_ptr<T>();
    const T* P = points.data_ptr<T>();
    const int64_t* qlen = ql.data_ptr<int64_t>();
    const int64_t* len = l.data_ptr<int64_t>();
    int64_t* oi = idx.data_ptr<int64_t>();
    int64_t* oc = count.data_ptr<int64_t>();
    const T r2 = static_cast<T>(radius * radius), lo = static_cast<T>(hmin), hi = static_cast<T>(hmax);
    std::vector<Grid3<T>> grids(B);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) grids[b].build(P + b * N * 3, clamp_len(len[b], N), reach);
    });
    at::parallel_for(0, B * M, 16, [&](int64_t s, int64_t e) {
      std::vector<std::pair<T, int64_t>> hits;
      for (int64_t t = s; t < e; ++t) {
        const int64_t b = t / M;
        if (t % M >= clamp_len(qlen[b], M)) continue;
        const Grid3<T>& g = grids[b];
        const T* c = Q + t * 3;
        const double cd[3] = {double(c[0]), double(c[1]), double(c[2])};
        hits.clear();
        auto test = [&](int64_t j) {
          const T rad = cylinder_radial(&g.xyz[j * 3], c, R + t * 9, r2, lo, hi);
          if (rad >= T(0)) hits.emplace_back(rad, g.order[j]);
        };
        // |p - c| <= |R^-T|_2 |q| <= reach * |R^-1|_F: exact for any R, not
        // only rotations (the CUDA kernel tests every point). A singular R
        // bounds nothing: test every point.
        const double bound = reach * inverse_frobenius(R + t * 9);
        if (std::isfinite(bound))
          g.for_each_in_box(cd, bound * (1 + 1e-4) + 1e-12, test);
        else
          for (int64_t j = 0; j < static_cast<int64_t>(g.order.size()); ++j) test(j);
        const int64_t cnt = std::min<int64_t>(k, hits.size());
        if (nearest)
          std::partial_sort(hits.begin(), hits.begin() + cnt, hits.end());
        else
          std::partial_sort(hits.begin(), hits.begin() + cnt, hits.end(),
                            [](const auto& a, const auto& b2) { return a.second < b2.second; });
        for (int64_t j = 0; j < cnt; ++j) oi[t * k + j] = hits[j].second;
        oc[t] = cnt;
      }
    });
  });
  return {idx, count};
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) { m.impl("cylinder_query", &cylinder_query_cpu); }

}  // namespace pcgrasp
