// Sparse convolution over a kernel map (MinkowskiEngine's correlation convention).
//
// A kernel map is the (input row, output row) pairs of every kernel offset, as kernel_map()
// returns them: in_idx, out_idx [P] int64 grouped by offset (counts[k] pairs each) and, inside a
// group, sorted by the *output* row (duplicates allowed: duplicate input coordinates give one
// output row several pairs of one offset).
//
// sparse_conv(features [N, Cin], weight [K, Cin, Cout] (or [K, Cout, Cin] with transpose_weight),
//             in_idx, out_idx, counts (K host ints), n_out, identity)
//   -> out [n_out, Cout]: out[o] = sum over pairs (i, o) of offset k of features[i] @ W_k, with
//      W_k = weight[k] (or weight[k]^T). identity >= 0 names an offset whose pairs are known to be
//      every row onto itself (0..N-1, N == n_out): it is computed as one dense product.
//      The input gradient is this op on the transposed map (pairs re-sorted by input row) with
//      transpose_weight, so one kernel serves both.
// sparse_conv_weight_grad(features [N, Cin], grad [n_out, Cout], in_idx, out_idx, counts, identity)
//   -> [K, Cin, Cout]: sum over pairs of offset k of features[i]^T grad[o].
//
// dtypes: float32, float64, and float16 / bfloat16 inputs accumulated in float32 (the output
// has the input dtype). Deterministic: fixed blocks and a fixed summation order on both devices,
// independent of the thread count.
//
// CPU: blocks of output rows; per block and offset, gather the block's pairs' input rows,
// one GEMM with W_k, add the products into the block's rows (no atomics: a block owns its rows);
// OpenMP across blocks. Weight gradient: one task per (offset, tile of output columns), walking
// the offset's pairs in fixed chunks and accumulating into its own slice of the result.
// CUDA: one launch per layer over all offsets: a thread block owns a tile of output rows and of
// output channels, walks every offset's pairs in that tile (found by binary search), gathers them
// through shared memory and accumulates in registers / shared memory; half types use tensor
// cores (WMMA, fp32 accumulation). Weight gradient: per (offset, chunk of pairs) partials, then a
// reduction in chunk order (deterministic).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace pcgrasp {

at::Tensor sparse_conv_cpu(const at::Tensor& features, const at::Tensor& weight, const at::Tensor& in_idx,
                           const at::Tensor& out_idx, at::IntArrayRef counts, int64_t n_out, int64_t identity,
                           bool transpose_weight);
at::Tensor sparse_conv_weight_grad_cpu(const at::Tensor& features, const at::Tensor& grad,
                                       const at::Tensor& in_idx, const at::Tensor& out_idx,
                                       at::IntArrayRef counts, int64_t identity);
at::Tensor sparse_conv_cuda(const at::Tensor& features, const at::Tensor& weight, const at::Tensor& in_idx,
                            const at::Tensor& out_idx, at::IntArrayRef counts, int64_t n_out, int64_t identity,
                            bool transpose_weight);
at::Tensor sparse_conv_weight_grad_cuda(const at::Tensor& features, const at::Tensor& grad,
                                        const at::Tensor& in_idx, const at::Tensor& out_idx,
                                        at::IntArrayRef counts, int64_t identity);

// Shared argument checks (shapes, dtypes, devices, counts); returns the group starts [K + 1].
std::vector<int64_t> sparse_conv_check_args(const at::Tensor& features, const at::Tensor& weight,
                                            const at::Tensor& in_idx, const at::Tensor& out_idx,
                                            at::IntArrayRef counts, int64_t n_out, int64_t identity,
                                            bool transpose_weight);
std::vector<int64_t> sparse_conv_weight_grad_check_args(const at::Tensor& features, const at::Tensor& grad,
                                                        const at::Tensor& in_idx, const at::Tensor& out_idx,
                                                        at::IntArrayRef counts, int64_t identity);

}  // namespace pcgrasp
