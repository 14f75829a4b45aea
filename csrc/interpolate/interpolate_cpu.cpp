#include "interpolate/interpolate.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "common/checks.h"
#include "gather/gather.h"

namespace pcgrasp {

void three_interpolate_check_args(const at::Tensor& features, const at::Tensor& idx,
                                  const at::Tensor& weight) {
  TORCH_CHECK(features.dim() == 3, "features must have shape [B, N, C], got ", features.sizes());
  TORCH_CHECK(at::isFloatingType(features.scalar_type()), "features must be floating point");
  TORCH_CHECK(idx.dim() == 3 && idx.size(2) == 3, "idx must have shape [B, M, 3], got ", idx.sizes());
  TORCH_CHECK(idx.scalar_type() == at::kLong, "idx must be int64");
  TORCH_CHECK(weight.sizes() == idx.sizes(), "weight must have the shape of idx, got ", weight.sizes());
  TORCH_CHECK(at::isFloatingType(weight.scalar_type()), "weight must be floating point");
  TORCH_CHECK(idx.size(0) == features.size(0), "idx and features must have the same batch size");
  check_same_device(features, idx, "features", "idx");
  check_same_device(features, weight, "features", "weight");
}

at::Tensor three_interpolate_cpu(const at::Tensor& features_in, const at::Tensor& idx_in,
                                 const at::Tensor& weight_in) {
  three_interpolate_check_args(features_in, idx_in, weight_in);
  const at::Tensor features = to_compute(features_in), idx = idx_in.contiguous();
  const at::Tensor weight = weight_in.to(features.scalar_type()).contiguous();
  const int64_t B = features.size(0), N = features.size(1), C = features.size(2), M = idx.size(1);
  check_index_range(idx, N, "idx");
  at::Tensor out = at::zeros({B, M, C}, features.options());
  if (out.numel() == 0) return out.to(features_in.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_cpu", [&] {
    const scalar_t* f = features.data_ptr<scalar_t>();
    const int64_t* ix = idx.data_ptr<int64_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * M, std::max<int64_t>(1, 2048 / std::max<int64_t>(C, 1)), [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const int64_t b = t / M;
        scalar_t* dst = o + t * C;
        for (int j = 0; j < 3; ++j) {
          const int64_t i = ix[t * 3 + j];
          if (i < 0 || i >= N) continue;
          const scalar_t wj = w[t * 3 + j];
          const scalar_t* src = f + (b * N + i) * C;
          for (int64_t c = 0; c < C; ++c) dst[c] += wj * src[c];
        }
      }
    });
  });
  return out.to(features_in.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> three_interpolate_backward_cpu(const at::Tensor& grad_in,
                                                                  const at::Tensor& features_in,
                                                                  const at::Tensor& idx_in,
                                                                  const at::Tensor& weight_in) {
  three_interpolate_check_args(features_in, idx_in, weight_in);
  check_same_device(features_in, grad_in, "features", "grad_out");
  const at::Tensor features = to_compute(features_in), idx = idx_in.contiguous();
  const at::Tensor weight = weight_in.to(features.scalar_type()).contiguous();
  const at::Tensor grad = grad_in.to(features.scalar_type()).contiguous();
  const int64_t B = features.size(0), N = features.size(1), C = features.size(2), M = idx.size(1);
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == B && grad.size(1) == M && grad.size(2) == C,
              "grad_out must have shape [B, M, C], got ", grad_in.sizes());
  at::Tensor grad_f = at::zeros({B, N, C}, features.options());
  at::Tensor grad_w = at::zeros({B, M, 3}, features.options());
  scatter_add_rows_cpu(grad, idx.view({B, M * 3}), weight.view({B, M * 3}), 3, grad_f);
  if (B * M > 0) {
    AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_backward_cpu", [&] {
      const scalar_t* f = features.data_ptr<scalar_t>();
      const scalar_t* g = grad.data_ptr<scalar_t>();
      const int64_t* ix = idx.data_ptr<int64_t>();
      scalar_t* gw = grad_w.data_ptr<scalar_t>();
      at::parallel_for(0, B * M, 64, [&](int64_t s, int64_t e) {
        for (int64_t t = s; t < e; ++t) {
          const int64_t b = t / M;
          for (int j = 0; j < 3; ++j) {
            const int64_t i = ix[t * 3 + j];
            if (i < 0 || i >= N) continue;
            const scalar_t* src = f + (b * N + i) * C;
            scalar_t acc = 0;
            for (int64_t c = 0; c < C; ++c) acc += g[t * C + c] * src[c];
            gw[t * 3 + j] = acc;
          }
        }
      });
    });
  }
  return {grad_f.to(features_in.scalar_type()), grad_w.to(weight_in.scalar_type())};
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) {
  m.impl("three_interpolate", &three_interpolate_cpu);
  m.impl("three_interpolate_backward", &three_interpolate_backward_cpu);
}

}  // namespace pcgrasp
