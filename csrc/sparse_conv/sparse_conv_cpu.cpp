#include "sparse_conv/sparse_conv.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <type_traits>

#include "common/blas.h"
#include "common/checks.h"

namespace pcgrasp {

namespace {

void check_index(const at::Tensor& t, const char* name, int64_t P) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == P, name, " must have shape [", P, "] (sum of counts), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
}

std::vector<int64_t> group_starts(at::IntArrayRef counts, int64_t identity, int64_t n_rows) {
  const int64_t K = static_cast<int64_t>(counts.size());
  TORCH_CHECK(K >= 1, "counts must have one entry per kernel offset (at least one), got none");
  TORCH_CHECK(identity >= -1 && identity < K, "identity must be -1 or an offset in [0, ", K, "), got ", identity);
  std::vector<int64_t> start(K + 1, 0);
  for (int64_t k = 0; k < K; ++k) {
    TORCH_CHECK(counts[k] >= 0, "counts must be >= 0, got ", counts[k], " at offset ", k);
    start[k + 1] = start[k] + counts[k];
  }
  if (identity >= 0)
    TORCH_CHECK(counts[identity] == n_rows, "identity offset ", identity, " must have one pair per row (",
                n_rows, "), got ", counts[identity]);
  return start;
}

}  // namespace

std::vector<int64_t> sparse_conv_check_args(const at::Tensor& features, const at::Tensor& weight,
                                            const at::Tensor& in_idx, const at::Tensor& out_idx,
                                            at::IntArrayRef counts, int64_t n_out, int64_t identity,
                                            bool transpose_weight) {
  TORCH_CHECK(features.dim() == 2, "features must have shape [N, Cin], got ", features.sizes());
  TORCH_CHECK(at::isFloatingType(features.scalar_type()), "features must be floating point, got ",
              features.scalar_type());
  TORCH_CHECK(weight.scalar_type() == features.scalar_type(), "weight (", weight.scalar_type(),
              ") must have the dtype of features (", features.scalar_type(), ")");
  const int64_t K = static_cast<int64_t>(counts.size()), cin = features.size(1);
  TORCH_CHECK(weight.dim() == 3 && weight.size(0) == K && weight.size(transpose_weight ? 2 : 1) == cin,
              "weight must have shape [", K, ", ", transpose_weight ? "Cout, " : "", cin,
              transpose_weight ? "" : ", Cout", "], got ", weight.sizes());
  TORCH_CHECK(n_out >= 0 && n_out < INT_MAX, "n_out must be in [0, 2^31 - 1), got ", n_out);
  TORCH_CHECK(features.size(0) < INT_MAX && cin < INT_MAX && weight.numel() < INT_MAX,
              "features / weight are too large for 32-bit BLAS dimensions");
  std::vector<int64_t> start = group_starts(counts, identity, n_out);
  if (identity >= 0)
    TORCH_CHECK(features.size(0) == n_out, "an identity offset needs as many input rows (", features.size(0),
                ") as output rows (", n_out, ")");
  check_index(in_idx, "in_idx", start[K]);
  check_index(out_idx, "out_idx", start[K]);
  check_same_device(features, weight, "features", "weight");
  check_same_device(features, in_idx, "features", "in_idx");
  check_same_device(features, out_idx, "features", "out_idx");
  return start;
}

std::vector<int64_t> sparse_conv_weight_grad_check_args(const at::Tensor& features, const at::Tensor& grad,
                                                        const at::Tensor& in_idx, const at::Tensor& out_idx,
                                                        at::IntArrayRef counts, int64_t identity) {
  TORCH_CHECK(features.dim() == 2 && grad.dim() == 2, "features and grad must be 2-D, got ", features.sizes(),
              " and ", grad.sizes());
  TORCH_CHECK(at::isFloatingType(features.scalar_type()) && grad.scalar_type() == features.scalar_type(),
              "features and grad must be floating point with one dtype, got ", features.scalar_type(), " and ",
              grad.scalar_type());
  TORCH_CHECK(features.size(0) < INT_MAX && grad.size(0) < INT_MAX, "too many rows for 32-bit BLAS dimensions");
  std::vector<int64_t> start = group_starts(counts, identity, grad.size(0));
  if (identity >= 0)
    TORCH_CHECK(features.size(0) == grad.size(0), "an identity offset needs as many input rows (",
                features.size(0), ") as output rows (", grad.size(0), ")");
  const int64_t K = static_cast<int64_t>(counts.size());
  check_index(in_idx, "in_idx", start[K]);
  check_index(out_idx, "out_idx", start[K]);
  check_same_device(features, grad, "features", "grad");
  check_same_device(features, in_idx, "features", "in_idx");
  check_same_device(features, out_idx, "features", "out_idx");
  return start;
}

namespace {

// The pairs must index inside the maps and be sorted by output row inside each offset's group
// (the blocked kernels rely on it); identity groups are not read.
void check_pairs_cpu(const int64_t* in, const int64_t* out, const std::vector<int64_t>& start, int64_t n_in,
                     int64_t n_out, int64_t identity, bool sorted) {
  const int64_t K = static_cast<int64_t>(start.size()) - 1;
  std::atomic<int> bad{0};  // 1: in_idx out of range, 2: out_idx out of range, 3: unsorted
  at::parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      if (k == identity) continue;
      for (int64_t p = start[k]; p < start[k + 1]; ++p) {
        if (in[p] < 0 || in[p] >= n_in) bad = 1;
        else if (out[p] < 0 || out[p] >= n_out) bad = 2;
        else if (sorted && p > start[k] && out[p] < out[p - 1]) bad = 3;
      }
    }
  });
  TORCH_CHECK(bad != 1, "in_idx must be in [0, ", n_in, ")");
  TORCH_CHECK(bad != 2, "out_idx must be in [0, ", n_out, ")");
  TORCH_CHECK(bad != 3, "the pairs of each offset must be sorted by the row they write to (out_idx; for the "
                        "input gradient, the transposed map sorted by in_idx)");
}

template <typename scalar_t, typename acc_t>
inline void load_row(const scalar_t* src, acc_t* dst, int64_t n) {
  for (int64_t c = 0; c < n; ++c) dst[c] = static_cast<acc_t>(src[c]);
}

// Output rows per block: fixed by n_out alone (never by the thread count, so the products and
// their sum order, and hence the bits, are the same on any machine): about 8 blocks, each big
// enough that streaming all K weight matrices once per block is cheap next to its GEMMs.
int64_t block_rows(int64_t n_out) { return std::clamp<int64_t>((n_out + 7) / 8, 64, 2048); }
// Pairs per GEMM: the gathered rows and their products stay in L2.
int64_t gemm_rows(int64_t cin, int64_t cout) {
  return std::clamp<int64_t>((int64_t(1) << 17) / std::max<int64_t>(1, cin + cout), 64, 1024);
}

template <typename scalar_t, typename acc_t>
void conv_forward(const at::Tensor& features, const at::Tensor& w_acc, const int64_t* in, const int64_t* out,
                  const std::vector<int64_t>& start, int64_t n_out, int64_t identity, bool tw, at::Tensor& result) {
  constexpr bool same = std::is_same_v<scalar_t, acc_t>;
  const int64_t K = static_cast<int64_t>(start.size()) - 1, cin = features.size(1);
  const int64_t cout = tw ? w_acc.size(1) : w_acc.size(2);
  const scalar_t* X = features.data_ptr<scalar_t>();
  const acc_t* W = w_acc.data_ptr<acc_t>();
  scalar_t* Y = result.data_ptr<scalar_t>();
  const int64_t R = block_rows(n_out), M = gemm_rows(cin, cout), nblocks = (n_out + R - 1) / R;
  const int64_t ldw = tw ? cin : cout;
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<acc_t> gbuf(M * cin), pbuf(M * cout), abuf(same ? 0 : R * cout);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t o0 = b * R, rows = std::min(R, n_out - o0);
      acc_t* acc;
      if constexpr (same) acc = reinterpret_cast<acc_t*>(Y) + o0 * cout;
      else acc = abuf.data();
      if (identity >= 0) {  // rows o0.. onto themselves: dense products initialise the block
        for (int64_t r0 = 0; r0 < rows; r0 += M) {
          const int64_t m = std::min(M, rows - r0);
          const acc_t* A;
          if constexpr (same) {
            A = reinterpret_cast<const acc_t*>(X) + (o0 + r0) * cin;
          } else {
            for (int64_t r = 0; r < m; ++r) load_row(X + (o0 + r0 + r) * cin, gbuf.data() + r * cin, cin);
            A = gbuf.data();
          }
          gemm_rm<acc_t>(false, tw, m, cout, cin, A, cin, W + identity * cin * cout, ldw, acc_t(0),
                         acc + r0 * cout, cout);
        }
      } else {
        std::fill(acc, acc + rows * cout, acc_t(0));
      }
      for (int64_t k = 0; k < K; ++k) {
        if (k == identity || start[k] == start[k + 1]) continue;
        // this block's pairs of offset k: out_idx is sorted inside the group
        const int64_t* lo = std::lower_bound(out + start[k], out + start[k + 1], o0);
        const int64_t* hi = std::lower_bound(lo, out + start[k + 1], o0 + rows);
        const acc_t* Wk = W + k * cin * cout;
        for (int64_t p0 = lo - out; p0 < hi - out; p0 += M) {
          const int64_t m = std::min<int64_t>(M, (hi - out) - p0);
          for (int64_t j = 0; j < m; ++j) load_row(X + in[p0 + j] * cin, gbuf.data() + j * cin, cin);
          gemm_rm<acc_t>(false, tw, m, cout, cin, gbuf.data(), cin, Wk, ldw, acc_t(0), pbuf.data(), cout);
          for (int64_t j = 0; j < m; ++j) {
            acc_t* dst = acc + (out[p0 + j] - o0) * cout;
            const acc_t* src = pbuf.data() + j * cout;
            for (int64_t c = 0; c < cout; ++c) dst[c] += src[c];
          }
        }
      }
      if constexpr (!same)
        for (int64_t r = 0; r < rows * cout; ++r) Y[o0 * cout + r] = static_cast<scalar_t>(acc[r]);
    }
  });
}

// The weight gradient without partial sums: one task per (offset, tile of output columns); each
// task walks its offset's pairs in order, in fixed chunks, accumulating into its own slice of the
// result (beta = 1 after the first chunk). The sum order depends on the map alone, so the bits do
// not depend on the thread count, and the only scratch is the gathered chunk (a split over pairs
// needed one [cin, cout] partial per chunk: tens of MB at the decoder's widths).
constexpr int64_t kWgradTile = 256;

template <typename scalar_t, typename acc_t>
void conv_weight_grad(const at::Tensor& features, const at::Tensor& grad, const int64_t* in, const int64_t* out,
                      const std::vector<int64_t>& start, int64_t identity, at::Tensor& gw) {
  constexpr bool same = std::is_same_v<scalar_t, acc_t>;
  const int64_t K = static_cast<int64_t>(start.size()) - 1, cin = features.size(1), cout = grad.size(1);
  const scalar_t* X = features.data_ptr<scalar_t>();
  const scalar_t* G = grad.data_ptr<scalar_t>();
  scalar_t* GW = gw.data_ptr<scalar_t>();
  const int64_t ntile = (cout + kWgradTile - 1) / kWgradTile;
  const int64_t M = std::clamp<int64_t>((int64_t(1) << 17) / std::max<int64_t>(1, cin + kWgradTile), 64, 2048);
  at::parallel_for(0, K * ntile, 1, [&](int64_t t0, int64_t t1) {
    std::vector<acc_t> xb, gb, accb;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t k = t / ntile, c0 = (t % ntile) * kWgradTile, w = std::min(kWgradTile, cout - c0);
      const int64_t n_k = start[k + 1] - start[k];
      if (n_k == 0) continue;  // gw starts at zero
      acc_t* dst;
      int64_t ldd;
      if constexpr (same) {
        dst = reinterpret_cast<acc_t*>(GW) + k * cin * cout + c0;
        ldd = cout;
      } else {
        accb.resize(cin * w);
        dst = accb.data();
        ldd = w;
      }
      for (int64_t q0 = 0; q0 < n_k; q0 += M) {
        const int64_t m = std::min(M, n_k - q0);
        const acc_t *A, *Bm;
        int64_t ldb;
        if (same && k == identity) {  // pairs are the rows q0.. in order: no gather
          A = reinterpret_cast<const acc_t*>(X) + q0 * cin;
          Bm = reinterpret_cast<const acc_t*>(G) + q0 * cout + c0;
          ldb = cout;
        } else {
          xb.resize(m * cin);
          gb.resize(m * w);
          for (int64_t j = 0; j < m; ++j) {
            const int64_t p = start[k] + q0 + j;
            const int64_t i = k == identity ? q0 + j : in[p];
            const int64_t o = k == identity ? i : out[p];
            load_row(X + i * cin, xb.data() + j * cin, cin);
            load_row(G + o * cout + c0, gb.data() + j * w, w);
          }
          A = xb.data();
          Bm = gb.data();
          ldb = w;
        }
        gemm_rm<acc_t>(true, false, cin, w, m, A, cin, Bm, ldb, q0 == 0 ? acc_t(0) : acc_t(1), dst, ldd);
      }
      if constexpr (!same)
        for (int64_t r = 0; r < cin; ++r)
          for (int64_t c = 0; c < w; ++c)
            GW[k * cin * cout + r * cout + c0 + c] = static_cast<scalar_t>(accb[r * w + c]);
    }
  });
}

}  // namespace

at::Tensor sparse_conv_cpu(const at::Tensor& features, const at::Tensor& weight, const at::Tensor& in_idx,
                           const at::Tensor& out_idx, at::IntArrayRef counts, int64_t n_out, int64_t identity,
                           bool transpose_weight) {
  const std::vector<int64_t> start = sparse_conv_check_args(features, weight, in_idx, out_idx, counts, n_out,
                                                            identity, transpose_weight);
  const at::Tensor x = features.contiguous(), ii = in_idx.contiguous(), oi = out_idx.contiguous();
  check_pairs_cpu(ii.data_ptr<int64_t>(), oi.data_ptr<int64_t>(), start, x.size(0), n_out, identity, true);
  const int64_t cout = weight.size(transpose_weight ? 1 : 2);
  at::Tensor result = at::empty({n_out, cout}, x.options());
  if (n_out == 0 || cout == 0) return result;
  const at::Tensor w = weight.to(compute_dtype(weight.scalar_type())).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sparse_conv_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    conv_forward<scalar_t, acc_t>(x, w, ii.data_ptr<int64_t>(), oi.data_ptr<int64_t>(), start, n_out, identity,
                                  transpose_weight, result);
  });
  return result;
}

at::Tensor sparse_conv_weight_grad_cpu(const at::Tensor& features, const at::Tensor& grad,
                                       const at::Tensor& in_idx, const at::Tensor& out_idx,
                                       at::IntArrayRef counts, int64_t identity) {
  const std::vector<int64_t> start =
      sparse_conv_weight_grad_check_args(features, grad, in_idx, out_idx, counts, identity);
  const at::Tensor x = features.contiguous(), g = grad.contiguous();
  const at::Tensor ii = in_idx.contiguous(), oi = out_idx.contiguous();
  // the weight gradient reads pairs in any order; only the ranges matter
  check_pairs_cpu(ii.data_ptr<int64_t>(), oi.data_ptr<int64_t>(), start, x.size(0), g.size(0), identity, false);
  const int64_t K = static_cast<int64_t>(counts.size());
  at::Tensor gw = at::zeros({K, x.size(1), g.size(1)}, x.options());
  if (gw.numel() == 0 || start[K] == 0) return gw;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sparse_conv_weight_grad_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    conv_weight_grad<scalar_t, acc_t>(x, g, ii.data_ptr<int64_t>(), oi.data_ptr<int64_t>(), start, identity, gw);
  });
  return gw;
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) {
  m.impl("sparse_conv", &sparse_conv_cpu);
  m.impl("sparse_conv_weight_grad", &sparse_conv_weight_grad_cpu);
}

}  // namespace pcgrasp
