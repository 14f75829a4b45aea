#include "gather/gather.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "common/checks.h"

namespace pcgrasp {

void gather_check_args(const at::Tensor& features, const at::Tensor& idx) {
  TORCH_CHECK(features.dim() == 3, "features must have shape [B, N, C], got ", features.sizes());
  TORCH_CHECK(at::isFloatingType(features.scalar_type()), "features must be floating point");
  TORCH_CHECK(idx.dim() == 2, "idx must have shape [B, L], got ", idx.sizes());
  TORCH_CHECK(idx.scalar_type() == at::kLong, "idx must be int64, got ", idx.scalar_type());
  TORCH_CHECK(idx.size(0) == features.size(0), "idx and features must have the same batch size");
  check_same_device(features, idx, "features", "idx");
}

void gather_backward_check_args(const at::Tensor& grad, const at::Tensor& idx, int64_t N) {
  TORCH_CHECK(grad.dim() == 3 && idx.dim() == 2 && grad.size(0) == idx.size(0) && grad.size(1) == idx.size(1),
              "grad must have shape [B, L, C] matching idx [B, L], got ", grad.sizes(), " and ", idx.sizes());
  TORCH_CHECK(at::isFloatingType(grad.scalar_type()), "grad must be floating point, got ", grad.scalar_type());
  TORCH_CHECK(idx.scalar_type() == at::kLong, "idx must be int64, got ", idx.scalar_type());
  TORCH_CHECK(N >= 0, "N must be non-negative, got ", N);
  check_same_device(grad, idx, "grad", "idx");
}

// Host-side range check; only for CPU tensors (no device sync).
void check_index_range(const at::Tensor& idx, int64_t N, const char* name) {
  if (idx.numel() == 0) return;
  const int64_t lo = idx.min().item<int64_t>(), hi = idx.max().item<int64_t>();
  TORCH_CHECK(lo >= -1 && hi < N, name, " must be in [-1, ", N, "), got values in [", lo, ", ", hi,
              "]");
}

at::Tensor gather_points_cpu(const at::Tensor& features_in, const at::Tensor& idx_in) {
  gather_check_args(features_in, idx_in);
  const at::Tensor features = features_in.contiguous(), idx = idx_in.contiguous();
  const int64_t B = features.size(0), N = features.size(1), C = features.size(2), L = idx.size(1);
  check_index_range(idx, N, "idx");
  at::Tensor out = at::empty({B, L, C}, features.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "gather_points_cpu", [&] {
    const scalar_t* f = features.data_ptr<scalar_t>();
    const int64_t* ix = idx.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * L, std::max<int64_t>(1, 4096 / std::max<int64_t>(C, 1)), [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const int64_t b = t / L, i = ix[t];
        scalar_t* dst = o + t * C;
        if (i >= 0 && i < N)
          std::memcpy(dst, f + (b * N + i) * C, sizeof(scalar_t) * C);
        else
          std::fill(dst, dst + C, scalar_t(0));
      }
    });
  });
  return out;
}

void scatter_add_rows_cpu(const at::Tensor& grad, const at::Tensor& idx, const at::Tensor& weight,
                          int64_t R, at::Tensor& out) {
  const int64_t B = out.size(0), N = out.size(1), C = out.size(2), L = idx.size(1);
  if (B == 0 || C == 0 || L == 0) return;
  // Each task owns (cloud, channel block) and walks every row: no races and a
  // fixed summation order, so the result is deterministic.
  const int64_t threads = at::get_num_threads();
  const int64_t cb = B >= 2 * threads ? C : std::max<int64_t>(8, (C + 7) / 8);
  const int64_t nblk = (C + cb - 1) / cb;
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "scatter_add_rows_cpu", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const int64_t* ix = idx.data_ptr<int64_t>();
    const scalar_t* w = weight.defined() ? weight.data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.data_ptr<scalar_t>();
    const int64_t LR = L / R;
    at::parallel_for(0, B * nblk, 1, [&](int64_t s, int64_t e) {
      for (int64_t task = s; task < e; ++task) {
        const int64_t b = task / nblk, c0 = (task % nblk) * cb, c1 = std::min(C, c0 + cb);
        for (int64_t l = 0; l < L; ++l) {
          const int64_t i = ix[b * L + l];
          if (i < 0 || i >= N) continue;
          const scalar_t wl = w ? w[b * L + l] : scalar_t(1);
          const scalar_t* src = g + (b * LR + l / R) * C;
          scalar_t* dst = o + (b * N + i) * C;
          for (int64_t c = c0; c < c1; ++c) dst[c] += wl * src[c];
        }
      }
    });
  });
}

at::Tensor gather_points_backward_cpu(const at::Tensor& grad_in, const at::Tensor& idx_in, int64_t N) {
  gather_backward_check_args(grad_in, idx_in, N);
  const at::Tensor grad = to_compute(grad_in), idx = idx_in.contiguous();
  at::Tensor out = at::zeros({grad.size(0), N, grad.size(2)}, grad.options());
  scatter_add_rows_cpu(grad, idx, at::Tensor(), 1, out);
  return out.to(grad_in.scalar_type());
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) {
  m.impl("gather_points", &gather_points_cpu);
  m.impl("gather_points_backward", &gather_points_backward_cpu);
}

}  // namespace pcgrasp
