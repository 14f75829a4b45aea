#include "point_info_nce/point_info_nce.h"

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "common/checks.h"

namespace pcgrasp {
namespace {

constexpr int64_t kTile = 2048;

struct Inputs {
  at::Tensor a, b, xyz, valid;  // compute dtype; xyz/valid undefined when absent
  int64_t B, M;
  double tau, g2;
  bool fne;
};

Inputs prepare(const at::Tensor& feat_a, const at::Tensor& feat_b, const c10::optional<at::Tensor>& xyz,
               const c10::optional<at::Tensor>& valid, double tau, double gamma) {
  TORCH_CHECK(feat_a.dim() == 3 && feat_b.dim() == 3, "feat_a and feat_b must have shape [B, M, C]");
  TORCH_CHECK(feat_a.sizes() == feat_b.sizes(), "feat_a and feat_b must have the same shape, got ",
              feat_a.sizes(), " and ", feat_b.sizes());
  TORCH_CHECK(at::isFloatingType(feat_a.scalar_type()) && feat_a.scalar_type() == feat_b.scalar_type(),
              "feat_a and feat_b must be floating point of the same dtype");
  check_same_device(feat_a, feat_b, "feat_a", "feat_b");
  TORCH_CHECK(tau > 0, "tau must be positive, got ", tau);
  Inputs in;
  const at::ScalarType ct = compute_dtype(feat_a.scalar_type());
  in.a = feat_a.to(ct).contiguous();
  in.b = feat_b.to(ct).contiguous();
  in.B = feat_a.size(0);
  in.M = feat_a.size(1);
  in.tau = tau;
  in.fne = gamma >= 0;
  in.g2 = gamma * gamma;
  if (in.fne) {
    TORCH_CHECK(xyz.has_value() && xyz->defined(), "xyz is required when gamma is given");
    TORCH_CHECK(xyz->dim() == 3 && xyz->size(0) == in.B && xyz->size(1) == in.M && xyz->size(2) == 3,
                "xyz must have shape [B, M, 3], got ", xyz->sizes());
    check_same_device(feat_a, *xyz, "feat_a", "xyz");
    in.xyz = xyz->to(ct).contiguous();
  }
  if (valid.has_value() && valid->defined()) {
    TORCH_CHECK(valid->dim() == 2 && valid->size(0) == in.B && valid->size(1) == in.M,
                "valid must have shape [B, M], got ", valid->sizes());
    TORCH_CHECK(valid->scalar_type() == at::kBool, "valid must be a bool tensor");
    check_same_device(feat_a, *valid, "feat_a", "valid");
    in.valid = valid->contiguous();
  }
  return in;
}

// Kept entries of tile rows [r0, r1) x cols [c0, c1) of cloud b: the diagonal
// (the positive) always; otherwise valid columns at distance >= gamma.
at::Tensor tile_mask(const Inputs& in, int64_t b, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const auto opt = in.a.options().dtype(at::kLong);
  const at::Tensor rows = at::arange(r0, r1, opt).unsqueeze(1), cols = at::arange(c0, c1, opt).unsqueeze(0);
  at::Tensor keep = at::ones({r1 - r0, c1 - c0}, in.a.options().dtype(at::kBool));
  if (in.valid.defined()) keep = keep & in.valid[b].slice(0, c0, c1).unsqueeze(0);
  if (in.fne) {
    const at::Tensor xr = in.xyz[b].slice(0, r0, r1).unsqueeze(1), xc = in.xyz[b].slice(0, c0, c1).unsqueeze(0);
    keep = keep & ((xr - xc).pow(2).sum(-1) >= in.g2);
  }
  return keep | (rows == cols);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> point_info_nce_tiled(const at::Tensor& feat_a,
                                                        const at::Tensor& feat_b,
                                                        const c10::optional<at::Tensor>& xyz,
                                                        const c10::optional<at::Tensor>& valid,
                                                        double tau, double gamma) {
  // The matmuls below must not be autocast: the backward (run outside
  // autocast) recomputes these logits in the compute dtype, and the saved
  // log-sum-exp must match them. Half inputs are computed in float32 anyway.
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const Inputs in = prepare(feat_a, feat_b, xyz, valid, tau, gamma);
  at::Tensor lse = at::zeros({in.B, in.M}, in.a.options());
  const double ninf = -std::numeric_limits<double>::infinity();
  for (int64_t b = 0; b < in.B; ++b) {
    const at::Tensor A = in.a[b], Bm = in.b[b];
    for (int64_t r0 = 0; r0 < in.M; r0 += kTile) {
      const int64_t r1 = std::min(in.M, r0 + kTile);
      const at::Tensor Ar = A.slice(0, r0, r1);
      at::Tensor run_max = at::full({r1 - r0}, ninf, in.a.options());
      at::Tensor run_sum = at::zeros({r1 - r0}, in.a.options());
      for (int64_t c0 = 0; c0 < in.M; c0 += kTile) {
        const int64_t c1 = std::min(in.M, c0 + kTile);
        at::Tensor S = at::matmul(Ar, Bm.slice(0, c0, c1).t()).div_(in.tau);
        S.masked_fill_(tile_mask(in, b, r0, r1, c0, c1).logical_not(), ninf);
        const at::Tensor new_max = at::maximum(run_max, std::get<0>(S.max(1)));
        // a row whose kept entries have not appeared yet has max -inf: shift by 0
        const at::Tensor shift = at::where(at::isinf(new_max), at::zeros_like(new_max), new_max);
        run_sum = run_sum * at::exp(run_max - shift) + at::exp(S - shift.unsqueeze(1)).sum(1);
        run_max = new_max;
      }
      const at::Tensor shift = at::where(at::isinf(run_max), at::zeros_like(run_max), run_max);
      lse.slice(1, r0, r1).select(0, b).copy_(shift + at::log(run_sum));
    }
  }
  const at::Tensor pos = (in.a * in.b).sum(-1) / in.tau;
  at::Tensor loss = lse - pos;
  if (in.valid.defined()) loss = at::where(in.valid, loss, at::zeros_like(loss));
  return {loss, lse};
}

std::tuple<at::Tensor, at::Tensor> point_info_nce_backward_tiled(
    const at::Tensor& grad_in, const at::Tensor& feat_a, const at::Tensor& feat_b,
    const c10::optional<at::Tensor>& xyz, const c10::optional<at::Tensor>& valid,
    const at::Tensor& lse_in, double tau, double gamma) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);  // as the forward
  const Inputs in = prepare(feat_a, feat_b, xyz, valid, tau, gamma);
  at::Tensor g = grad_in.to(in.a.scalar_type());
  if (in.valid.defined()) g = at::where(in.valid, g, at::zeros_like(g));
  const at::Tensor lse = lse_in.to(in.a.scalar_type());
  at::Tensor ga = at::zeros_like(in.a), gb = at::zeros_like(in.b);
  for (int64_t b = 0; b < in.B; ++b) {
    const at::Tensor A = in.a[b], Bm = in.b[b];
    at::Tensor gA = ga[b], gB = gb[b];
    for (int64_t r0 = 0; r0 < in.M; r0 += kTile) {
      const int64_t r1 = std::min(in.M, r0 + kTile);
      const at::Tensor Ar = A.slice(0, r0, r1);
      const at::Tensor lr = lse[b].slice(0, r0, r1).unsqueeze(1), gr = g[b].slice(0, r0, r1).unsqueeze(1);
      for (int64_t c0 = 0; c0 < in.M; c0 += kTile) {
        const int64_t c1 = std::min(in.M, c0 + kTile);
        const at::Tensor Bc = Bm.slice(0, c0, c1);
        at::Tensor S = at::matmul(Ar, Bc.t()).div_(in.tau);
        // dL/ds_ik = g_i (p_ik - delta_ik), p = softmax over the kept entries.
        // Mask before exponentiating: a dropped logit can exceed the row's
        // log-sum-exp by more than exp's range, and inf * 0 would be NaN.
        S.masked_fill_(tile_mask(in, b, r0, r1, c0, c1).logical_not(), -std::numeric_limits<double>::infinity());
        at::Tensor Pm = at::exp(S - lr);
        if (r0 < c1 && c0 < r1) Pm.diagonal(r0 - c0).sub_(1);  // entries (i, i) of this tile
        Pm.mul_(gr).div_(in.tau);
        gA.slice(0, r0, r1).add_(at::matmul(Pm, Bc));
        gB.slice(0, c0, c1).add_(at::matmul(Pm.t(), Ar));
      }
    }
  }
  return {ga.to(feat_a.scalar_type()), gb.to(feat_b.scalar_type())};
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) {
  m.impl("point_info_nce", &point_info_nce_tiled);
  m.impl("point_info_nce_backward", &point_info_nce_backward_tiled);
}
#ifdef PCGRASP_WITH_CUDA
TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) {
  m.impl("point_info_nce", &point_info_nce_tiled);
  m.impl("point_info_nce_backward", &point_info_nce_backward_tiled);
}
#endif

}  // namespace pcgrasp
