#include "nearest_neighbor_order/nearest_neighbor_order.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "common/checks.h"
#include "common/fp.h"

namespace pcgrasp {

void nearest_neighbor_order_check_args(const at::Tensor& centers, const at::Tensor& lengths) {
  check_cloud(centers, "centers");
  TORCH_CHECK(centers.size(2) == 3, "centers must have shape [B, G, 3], got ", centers.sizes());
  check_lengths(lengths, centers.size(0), "lengths");
  check_same_device(centers, lengths, "centers", "lengths");
}

at::Tensor nearest_neighbor_order_cpu(const at::Tensor& centers_in, const at::Tensor& lengths_in) {
  nearest_neighbor_order_check_args(centers_in, lengths_in);
  const at::Tensor c = to_compute(centers_in), lengths = lengths_in.contiguous();
  const int64_t B = c.size(0), G = c.size(1);
  at::Tensor order = at::full({B, G}, -1, c.options().dtype(at::kLong));
  if (B * G == 0) return order;
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "nearest_neighbor_order_cpu", [&] {
    const scalar_t* C = c.data_ptr<scalar_t>();
    const int64_t* len = lengths.data_ptr<int64_t>();
    int64_t* o = order.data_ptr<int64_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<char> used;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t n = clamp_len(len[b], G);
        if (n == 0) continue;
        const scalar_t* P = C + b * G * 3;
        int64_t cur = 0;
        scalar_t best = std::numeric_limits<scalar_t>::infinity();
        for (int64_t g = 0; g < n; ++g) {
          const scalar_t s = add_rn(add_rn(P[g * 3], P[g * 3 + 1]), P[g * 3 + 2]);
          if (s < best) {
            best = s;
            cur = g;
          }
        }
        used.assign(n, 0);
        for (int64_t step = 0; step < n; ++step) {
          o[b * G + step] = cur;
          used[cur] = 1;
          int64_t nxt = -1;
          scalar_t bd = std::numeric_limits<scalar_t>::infinity();
          for (int64_t g = 0; g < n; ++g) {
            if (used[g]) continue;
            const scalar_t d = dist2_rn(P + g * 3, P + cur * 3, int64_t(3));
            if (nxt < 0 || d < bd) {
              bd = d;
              nxt = g;
            }
          }
          cur = nxt;
        }
      }
    });
  });
  return order;
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) { m.impl("nearest_neighbor_order", &nearest_neighbor_order_cpu); }

}  // namespace pcgrasp
