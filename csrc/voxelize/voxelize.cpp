#include "voxelize/voxelize.h"

#include <torch/library.h>

#include <cmath>
#include <limits>

#include "common/checks.h"

namespace pcgrasp {

std::tuple<at::Tensor, at::Tensor, at::Tensor> voxelize_sorted(const at::Tensor& points_in,
                                                               double voxel_size,
                                                               const at::Tensor& lengths) {
  check_cloud(points_in, "points");
  TORCH_CHECK(points_in.size(2) == 3, "points must have shape [B, N, 3], got ", points_in.sizes());
  check_lengths(lengths, points_in.size(0), "lengths");
  check_same_device(points_in, lengths, "points", "lengths");
  TORCH_CHECK(voxel_size > 0 && std::isfinite(voxel_size), "voxel_size must be positive and finite, got ", voxel_size);
  const at::Tensor points = to_compute(points_in);
  const int64_t B = points.size(0), N = points.size(1);
  const auto lopt = points.options().dtype(at::kLong);
  const at::Tensor valid = at::arange(N, lopt).unsqueeze(0) < lengths.clamp(0, N).unsqueeze(1);
  const at::Tensor flat = valid.reshape({-1}).nonzero().squeeze(1);  // flat b * N + i of valid points
  at::Tensor inverse = at::full({B * N}, -1, lopt);
  if (flat.numel() == 0)
    return {at::empty({0, 4}, points.options().dtype(at::kInt)), inverse, at::empty({0}, lopt)};
  // The true quotient on every device: a CUDA tensor divided by a host scalar
  // is computed as p * (1 / size), which can move a point next to a voxel
  // boundary into its neighbour; a device tensor divisor is a real division.
  const at::Tensor size = at::full({1}, voxel_size, points.options());
  const at::Tensor c = at::floor(points.reshape({-1, 3}).index_select(0, flat) / size);
  const at::Tensor lo = std::get<0>(c.min(0)), hi = std::get<0>(c.max(0));
  const at::Tensor both = at::cat({lo, hi}).to(at::kDouble).cpu();
  const double* lh = both.data_ptr<double>();
  for (int d = 0; d < 6; ++d)
    TORCH_CHECK_VALUE(lh[d] >= double(std::numeric_limits<int32_t>::min()) &&
                          lh[d] <= double(std::numeric_limits<int32_t>::max()),
                      "voxel coordinates overflow int32: floor(points / voxel_size) = ", lh[d],
                      " is outside [-2^31, 2^31 - 1]; use a larger voxel_size or recentre the points");
  const at::Tensor ci = c.to(at::kLong), lo_i = lo.to(at::kLong);
  const at::Tensor bidx = at::div(flat, N, "floor");
  // mixed-radix key (batch, x, y, z): monotone in lexicographic order
  double span[3], total = double(B);
  for (int d = 0; d < 3; ++d) {
    span[d] = lh[3 + d] - lh[d] + 1;
    total *= span[d];
  }
  at::Tensor coords, inv;
  if (total < 9.0e18) {
    at::Tensor key = bidx;
    for (int d = 0; d < 3; ++d) key = key * static_cast<int64_t>(span[d]) + (ci.select(1, d) - lo_i[d]);
    auto [uk, ui, counts] = at::_unique2(key, /*sorted=*/true, /*return_inverse=*/true, /*return_counts=*/false);
    inv = ui;
    at::Tensor rest = uk;
    at::Tensor parts[4];
    for (int d = 2; d >= 0; --d) {
      const int64_t s = static_cast<int64_t>(span[d]);
      parts[d + 1] = at::remainder(rest, s) + lo_i[d];
      rest = at::div(rest, s, "floor");
    }
    parts[0] = rest;
    coords = at::stack({parts[0], parts[1], parts[2], parts[3]}, 1);
  } else {  // keys would not fit in 63 bits: unique over rows instead
    auto [u, ui, counts] = at::unique_dim(at::cat({bidx.unsqueeze(1), ci}, 1), 0, /*sorted=*/true,
                                          /*return_inverse=*/true, /*return_counts=*/false);
    coords = u;
    inv = ui;
  }
  inverse.index_put_({flat}, inv);
  const int64_t V = coords.size(0);
  at::Tensor first = at::full({V}, std::numeric_limits<int64_t>::max(), lopt)
                         .scatter_reduce_(0, inv, flat, "amin", /*include_self=*/true);
  return {coords.to(at::kInt), inverse, first};
}

#ifdef PCGRASP_WITH_CUDA
TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) { m.impl("voxelize", &voxelize_sorted); }
#endif

}  // namespace pcgrasp
