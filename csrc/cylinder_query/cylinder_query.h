// GSNet CloudCrop cylinder query.
//
//   query [B, M, 3] centres c, rotation [B, M, 3, 3] R, points [B, N, 3]
//   p is inside when, with q = R^T (p - c): q_y^2 + q_z^2 < radius^2 and
//   hmin < q_x < hmax.
//   nearest = false: the first k inside points in index order (graspnet op);
//   nearest = true: the k inside points with the smallest radial distance
//   q_y^2 + q_z^2, ties to the lower index.
// returns (idx [B, M, k] int64, -1 past count; count [B, M] int64)
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "common/fp.h"

namespace pcgrasp {

std::tuple<at::Tensor, at::Tensor> cylinder_query_cpu(
    const at::Tensor& query, const at::Tensor& rotation, const at::Tensor& points,
    const at::Tensor& query_lengths, const at::Tensor& lengths, double radius, double hmin,
    double hmax, int64_t k, bool nearest);
std::tuple<at::Tensor, at::Tensor> cylinder_query_cuda(
    const at::Tensor& query, const at::Tensor& rotation, const at::Tensor& points,
    const at::Tensor& query_lengths, const at::Tensor& lengths, double radius, double hmin,
    double hmax, int64_t k, bool nearest);
void cylinder_query_check_args(const at::Tensor& query, const at::Tensor& rotation,
                               const at::Tensor& points, const at::Tensor& query_lengths,
                               const at::Tensor& lengths, double radius, double hmin, double hmax,
                               int64_t k);

// Radial distance^2 of p in the cylinder frame (c, R), or -1 when p is outside.
template <typename T>
PCG_HD T cylinder_radial(const T* p, const T* c, const T* R, T r2, T hmin, T hmax) {
  const T v0 = sub_rn(p[0], c[0]), v1 = sub_rn(p[1], c[1]), v2 = sub_rn(p[2], c[2]);
  T q[3];
  for (int j = 0; j < 3; ++j)  // q_j = sum_d R[d][j] v_d
    q[j] = add_rn(add_rn(mul_rn(R[j], v0), mul_rn(R[3 + j], v1)), mul_rn(R[6 + j], v2));
  const T rad = add_rn(mul_rn(q[1], q[1]), mul_rn(q[2], q[2]));
  return (rad < r2 && hmin < q[0] && q[0] < hmax) ? rad : T(-1);
}

}  // namespace pcgrasp
