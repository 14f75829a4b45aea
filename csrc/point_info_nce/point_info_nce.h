// PointInfoNCE with false-negative elimination (GraspContrast Eq. 4-5), tiled:
// the M x M logits are produced one (row block x column block) tile at a time
// with a running (online) log-sum-exp, so memory is O(tile), never O(M^2).
//
//   feat_a, feat_b [B, M, C]; row i of feat_a is positive with row i of feat_b.
//   xyz [B, M, 3] optional; gamma >= 0 masks negatives k with |x_i - x_k| < gamma
//   (dist2 < gamma^2); gamma < 0: no mask. valid [B, M] bool optional: invalid
//   rows contribute 0 and invalid columns are never negatives.
//   logits s_ik = <a_i, b_k> / tau; lse_i = log sum_{k kept} exp(s_ik)
// returns (loss [B, M] = lse_i - s_ii (0 on invalid rows), lse [B, M]).
// The kernels are ATen tile operations (matmul + elementwise), so the same
// code runs on CPU and CUDA; float16/bfloat16 inputs are computed in float32.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace pcgrasp {

std::tuple<at::Tensor, at::Tensor> point_info_nce_tiled(const at::Tensor& feat_a,
                                                        const at::Tensor& feat_b,
                                                        const c10::optional<at::Tensor>& xyz,
                                                        const c10::optional<at::Tensor>& valid,
                                                        double tau, double gamma);

std::tuple<at::Tensor, at::Tensor> point_info_nce_backward_tiled(
    const at::Tensor& grad, const at::Tensor& feat_a, const at::Tensor& feat_b,
    const c10::optional<at::Tensor>& xyz, const c10::optional<at::Tensor>& valid,
    const at::Tensor& lse, double tau, double gamma);

}  // namespace pcgrasp
