// Uniform 3-D grid over one cloud, used by the CPU kNN and ball-query kernels.
//
// Points are bucketed by cell with a counting sort that keeps index order
// inside each cell; their coordinates are copied in that order so that a cell
// scan reads contiguous memory. Cell coordinates are computed in double and
// clamped, so a query outside the bounding box still maps to a valid cell.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace pcgrasp {

template <typename T>
struct Grid3 {
  double origin[3] = {0, 0, 0};
  double h = 1.0, inv_h = 1.0;
  int64_t dims[3] = {1, 1, 1};
  std::vector<int64_t> cell_start;  // ncells + 1 offsets into order/xyz
  std::vector<int64_t> order;       // original point index, cell-major
  std::vector<T> xyz;               // coordinates in `order` order, [n, 3]

  int64_t ncells() const { return dims[0] * dims[1] * dims[2]; }

  int64_t coord(double x, int d) const {
    const double c = std::floor((x - origin[d]) * inv_h);
    if (!(c >= 0)) return 0;  // also catches NaN
    if (c >= static_cast<double>(dims[d] - 1)) return dims[d] - 1;
    return static_cast<int64_t>(c);
  }

  int64_t cell_id(int64_t cx, int64_t cy, int64_t cz) const {
    return (cx * dims[1] + cy) * dims[2] + cz;
  }

  // pts: n points with row stride 3. cell: requested cell edge (> 0), or <= 0
  // to pick one giving about `per_cell` points per occupied cell. The cell
  // count is capped near max(4n, 64) by growing the edge.
  void build(const T* pts, int64_t n, double cell, double per_cell = 2.0) {
    double lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};
    if (n > 0) {
      for (int d = 0; d < 3; ++d) lo[d] = hi[d] = static_cast<double>(pts[d]);
      for (int64_t i = 1; i < n; ++i)
        for (int d = 0; d < 3; ++d) {
          const double v = static_cast<double>(pts[i * 3 + d]);
          lo[d] = std::min(lo[d], v);
          hi[d] = std::max(hi[d], v);
        }
    }
    double ext[3], L = 0;
    for (int d = 0; d < 3; ++d) {
      origin[d] = lo[d];
      ext[d] = hi[d] - lo[d];
      L = std::max(L, ext[d]);
    }
    if (!(cell > 0) || !std::isfinite(cell)) {
      if (L > 0 && n > 0) {
        double vol = 1;
        for (int d = 0; d < 3; ++d) vol *= std::max(ext[d], L * 1e-2);
        cell = std::cbrt(vol * per_cell / static_cast<double>(n));
      } else {
        cell = 1.0;
      }
    }
    if (!std::isfinite(cell) || !(L < std::numeric_limits<double>::infinity())) cell = 0;
    const double max_cells = std::max(4.0 * static_cast<double>(n), 64.0);
    h = cell;
    for (;;) {
      double total = 1;
      for (int d = 0; d < 3; ++d) {
        dims[d] = (h > 0) ? static_cast<int64_t>(std::min(ext[d] / h, 1e7)) + 1 : 1;
        total *= static_cast<double>(dims[d]);
      }
      if (total <= max_cells || h <= 0) break;
      h *= 1.26;
    }
    if (h <= 0) {
      h = 1.0;
      dims[0] = dims[1] = dims[2] = 1;
    }
    inv_h = 1.0 / h;

    const int64_t nc = ncells();
    cell_start.assign(nc + 1, 0);
    std::vector<int64_t> cid(n);
    for (int64_t i = 0; i < n; ++i) {
      const T* p = pts + i * 3;
      cid[i] = cell_id(coord(p[0], 0), coord(p[1], 1), coord(p[2], 2));
      ++cell_start[cid[i] + 1];
    }
    for (int64_t c = 0; c < nc; ++c) cell_start[c + 1] += cell_start[c];
    std::vector<int64_t> fill(cell_start.begin(), cell_start.end() - 1);
    order.resize(n);
    xyz.resize(n * 3);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t slot = fill[cid[i]]++;
      order[slot] = i;
      for (int d = 0; d < 3; ++d) xyz[slot * 3 + d] = pts[i * 3 + d];
    }
  }

  // Lower bound on the distance from q to any point stored outside the block
  // of cells [blo, bhi] (inclusive, per axis). Returns +inf when the block
  // covers the whole grid. A small slack absorbs rounding in cell assignment.
  double outside_bound(const double* q, const int64_t* blo, const int64_t* bhi) const {
    double b = std::numeric_limits<double>::infinity();
    for (int d = 0; d < 3; ++d) {
      if (blo[d] > 0) b = std::min(b, std::max(0.0, q[d] - (origin[d] + blo[d] * h)));
      if (bhi[d] < dims[d] - 1)
        b = std::min(b, std::max(0.0, origin[d] + (bhi[d] + 1) * h - q[d]));
    }
    if (std::isfinite(b)) b = std::max(0.0, b - 1e-7 * h);
    return b;
  }

  // Calls f(slot) for every stored point in the axis-aligned box of cells
  // covering [q - r, q + r].
  template <typename F>
  void for_each_in_box(const double* q, double r, F&& f) const {
    int64_t blo[3], bhi[3];
    for (int d = 0; d < 3; ++d) {
      blo[d] = coord(q[d] - r, d);
      bhi[d] = coord(q[d] + r, d);
    }
    for (int64_t x = blo[0]; x <= bhi[0]; ++x)
      for (int64_t y = blo[1]; y <= bhi[1]; ++y) {
        const int64_t base = cell_id(x, y, 0);
        // cells z in [blo, bhi] are contiguous in storage
        const int64_t s = cell_start[base + blo[2]], e = cell_start[base + bhi[2] + 1];
        for (int64_t j = s; j < e; ++j) f(j);
      }
  }
};

}  // namespace pcgrasp
