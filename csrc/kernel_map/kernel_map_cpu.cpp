#include "kernel_map/kernel_map.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "common/checks.h"

namespace pcgrasp {

namespace {

void check_coords(const at::Tensor& c, const char* name) {
  TORCH_CHECK(c.dim() == 2 && c.size(1) == 4, name, " must have shape [N, 4] (batch, x, y, z), got ",
              c.sizes());
  TORCH_CHECK(c.scalar_type() == at::kInt, name, " must be int32, got ", c.scalar_type());
}

void check_triple(at::IntArrayRef v, const char* name, int64_t lo) {
  TORCH_CHECK(v.size() == 3, name, " must have 3 entries (x, y, z), got ", v.size());
  for (int64_t x : v) TORCH_CHECK(x >= lo && x <= INT32_MAX, name, " entries must be in [", lo, ", 2^31), got ", v);
}

}  // namespace

void kernel_map_check_args(const at::Tensor& in_coords, const at::Tensor& out_coords,
                           at::IntArrayRef kernel_size, at::IntArrayRef dilation,
                           at::IntArrayRef tensor_stride) {
  check_coords(in_coords, "in_coords");
  check_coords(out_coords, "out_coords");
  check_same_device(in_coords, out_coords, "in_coords", "out_coords");
  check_triple(kernel_size, "kernel_size", 1);
  check_triple(dilation, "dilation", 1);
  check_triple(tensor_stride, "tensor_stride", 1);
  // in double: the int64 product of three sizes below 2^31 could overflow
  TORCH_CHECK(double(kernel_size[0]) * double(kernel_size[1]) * double(kernel_size[2]) <= double(1 << 20),
              "kernel_size volume must be at most 2^20, got ", kernel_size);
}

std::vector<int64_t> kernel_offsets(at::IntArrayRef ks, at::IntArrayRef dil, at::IntArrayRef ts) {
  const int64_t K = ks[0] * ks[1] * ks[2];
  std::vector<int64_t> off(K * 3);
  for (int64_t k = 0; k < K; ++k) {
    int64_t r = k;
    for (int d = 0; d < 3; ++d) {  // x fastest
      const int64_t a = r % ks[d];
      r /= ks[d];
      off[k * 3 + d] = (ks[d] % 2) ? (a - ks[d] / 2) * dil[d] * ts[d] : a * ts[d];
    }
  }
  return off;
}

at::Tensor lexsort_rows(const at::Tensor& rows) {
  const int64_t n = rows.size(0);
  at::Tensor perm = at::arange(n, rows.options().dtype(at::kLong));
  for (int d = 3; d >= 0; --d) {  // least significant column first, stable
    const at::Tensor col = rows.select(1, d).index_select(0, perm);
    perm = perm.index_select(0, std::get<1>(at::sort(col, /*stable=*/true, 0, false)));
  }
  return perm;
}

std::tuple<at::Tensor, at::Tensor> downsample_coords(const at::Tensor& coords, at::IntArrayRef stride) {
  check_coords(coords, "coords");
  check_triple(stride, "stride", 1);
  const auto lopt = coords.options().dtype(at::kLong);
  const int64_t n = coords.size(0);
  if (n == 0) return {at::empty({0, 4}, coords.options()), at::empty({0}, lopt)};
  at::Tensor c = coords.to(at::kLong);
  at::Tensor cols[4] = {c.select(1, 0)};
  for (int d = 0; d < 3; ++d) cols[d + 1] = at::div(c.select(1, d + 1), stride[d], "floor") * stride[d];
  c = at::stack({cols[0], cols[1], cols[2], cols[3]}, 1);
  const at::Tensor ext = at::stack({c.min(), c.max()}).cpu();
  TORCH_CHECK(ext[0].item<int64_t>() >= INT32_MIN && ext[1].item<int64_t>() <= INT32_MAX,
              "downsampled coordinates overflow int32 (coordinates near the int32 limits with stride ",
              stride, ")");
  const at::Tensor perm = lexsort_rows(c);
  const at::Tensor s = c.index_select(0, perm);
  at::Tensor is_new = at::ones({n}, lopt);
  if (n > 1) is_new.narrow(0, 1, n - 1).copy_((s.narrow(0, 1, n - 1) != s.narrow(0, 0, n - 1)).any(1));
  const at::Tensor group = at::cumsum(is_new, 0) - 1;
  at::Tensor inverse = at::empty({n}, lopt);
  inverse.index_put_({perm}, group);
  const at::Tensor out = s.index_select(0, is_new.nonzero().squeeze(1)).to(at::kInt);
  return {out, inverse};
}

namespace {

// Rows packed into one int64 key, most significant column first (so key order is the rows'
// lexicographic order), each column shifted by its minimum over the input rows: possible when
// the input rows' spans need at most 62 bits together, which covers any real scene.
struct RowPacker {
  int64_t lo[4], span[4];
  int shift[4];
  bool ok = false;

  explicit RowPacker(const int32_t* rows, int64_t n) {
    if (n == 0) return;
    int64_t hi[4];
    for (int d = 0; d < 4; ++d) lo[d] = hi[d] = rows[d];
    for (int64_t i = 1; i < n; ++i)
      for (int d = 0; d < 4; ++d) {
        lo[d] = std::min<int64_t>(lo[d], rows[i * 4 + d]);
        hi[d] = std::max<int64_t>(hi[d], rows[i * 4 + d]);
      }
    int bits = 0;
    for (int d = 3; d >= 0; --d) {
      span[d] = hi[d] - lo[d] + 1;
      int b = 0;
      while (b < 40 && (int64_t(1) << b) < span[d]) ++b;
      shift[d] = bits;
      bits += b;
    }
    ok = bits <= 62;
  }
  // -1 when the row lies outside the input rows' box (it can match nothing)
  int64_t key(const int64_t* q) const {
    int64_t k = 0;
    for (int d = 0; d < 4; ++d) {
      const int64_t v = q[d] - lo[d];
      if (v < 0 || v >= span[d]) return -1;
      k |= v << shift[d];
    }
    return k;
  }
};

// Open-addressing hash of the distinct input keys -> their [first, last) run in the sorted order.
struct KeyTable {
  std::vector<int64_t> keys;
  std::vector<int64_t> first, last;
  int64_t mask;

  static uint64_t hash(int64_t k) { return (static_cast<uint64_t>(k) * 0x9E3779B97F4A7C15ull) >> 17; }

  KeyTable(const std::vector<int64_t>& sorted_keys) {
    int64_t cap = 16;
    while (cap < 2 * static_cast<int64_t>(sorted_keys.size())) cap <<= 1;
    keys.assign(cap, -1);
    first.resize(cap);
    last.resize(cap);
    mask = cap - 1;
    const int64_t n = static_cast<int64_t>(sorted_keys.size());
    for (int64_t s = 0; s < n;) {
      int64_t e = s + 1;
      while (e < n && sorted_keys[e] == sorted_keys[s]) ++e;
      int64_t h = static_cast<int64_t>(hash(sorted_keys[s])) & mask;
      while (keys[h] != -1) h = (h + 1) & mask;
      keys[h] = sorted_keys[s];
      first[h] = s;
      last[h] = e;
      s = e;
    }
  }
  void find(int64_t k, int64_t& s, int64_t& e) const {
    for (int64_t h = static_cast<int64_t>(hash(k)) & mask;; h = (h + 1) & mask) {
      if (keys[h] == k) { s = first[h]; e = last[h]; return; }
      if (keys[h] == -1) { s = e = 0; return; }
    }
  }
};

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> kernel_map_cpu(const at::Tensor& in_coords,
                                                              const at::Tensor& out_coords,
                                                              at::IntArrayRef kernel_size,
                                                              at::IntArrayRef dilation,
                                                              at::IntArrayRef tensor_stride) {
  kernel_map_check_args(in_coords, out_coords, kernel_size, dilation, tensor_stride);
  const std::vector<int64_t> off = kernel_offsets(kernel_size, dilation, tensor_stride);
  const int64_t K = static_cast<int64_t>(off.size()) / 3, N = in_coords.size(0), M = out_coords.size(0);
  const auto lopt = in_coords.options().dtype(at::kLong);
  const at::Tensor in_c = in_coords.contiguous();
  const RowPacker packer(in_c.data_ptr<int32_t>(), N);
  at::Tensor perm, sorted;
  std::vector<int64_t> sorted_keys;
  if (packer.ok) {  // one int64 key per row: a stable sort of the keys, then a hash lookup per query
    std::vector<int64_t> key(N);
    const int32_t* R = in_c.data_ptr<int32_t>();
    for (int64_t i = 0; i < N; ++i) {
      const int64_t q[4] = {R[i * 4], R[i * 4 + 1], R[i * 4 + 2], R[i * 4 + 3]};
      key[i] = packer.key(q);
    }
    perm = at::empty({N}, lopt);
    int64_t* pp = perm.data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i) pp[i] = i;
    std::stable_sort(pp, pp + N, [&](int64_t a, int64_t b) { return key[a] < key[b]; });
    sorted_keys.resize(N);
    for (int64_t i = 0; i < N; ++i) sorted_keys[i] = key[pp[i]];
  } else {  // spans too wide to pack: lexicographic sort of the rows and binary search
    perm = lexsort_rows(in_c).contiguous();
    sorted = in_c.index_select(0, perm).contiguous();
  }
  const KeyTable table(packer.ok ? sorted_keys : std::vector<int64_t>());
  const at::Tensor out = out_coords.contiguous();
  const int32_t* S = packer.ok ? nullptr : sorted.data_ptr<int32_t>();
  const int32_t* O = out.data_ptr<int32_t>();
  const int64_t* P = perm.data_ptr<int64_t>();
  // Queries t = k * M + o in chunks; each chunk's pairs stay in t order.
  constexpr int64_t kChunk = 4096;
  const int64_t T = K * M, nchunks = (T + kChunk - 1) / kChunk;
  std::vector<std::vector<int64_t>> hits(nchunks);  // (in, t) pairs, flattened
  at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
    int64_t q[4];
    for (int64_t ch = c0; ch < c1; ++ch) {
      for (int64_t t = ch * kChunk; t < std::min(T, (ch + 1) * kChunk); ++t) {
        const int64_t k = t / M, o = t % M;
        if (!shifted_row(O + o * 4, &off[k * 3], q)) continue;
        int64_t s = 0, e = 0;
        if (packer.ok) {
          const int64_t kq = packer.key(q);
          if (kq >= 0) table.find(kq, s, e);
        } else {
          equal_range_row(S, N, q, s, e);
        }
        for (int64_t p = s; p < e; ++p) hits[ch].insert(hits[ch].end(), {P[p], t});
      }
    }
  });
  int64_t total = 0;
  for (const auto& h : hits) total += static_cast<int64_t>(h.size()) / 2;
  at::Tensor in_idx = at::empty({total}, lopt), out_idx = at::empty({total}, lopt);
  at::Tensor counts = at::zeros({K}, lopt);
  int64_t *pi = in_idx.data_ptr<int64_t>(), *po = out_idx.data_ptr<int64_t>(), *pc = counts.data_ptr<int64_t>();
  for (const auto& h : hits)
    for (size_t j = 0; j < h.size(); j += 2) {
      *pi++ = h[j];
      *po++ = h[j + 1] % M;
      ++pc[h[j + 1] / M];
    }
  return {in_idx, out_idx, counts};
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) {
  m.impl("kernel_map", &kernel_map_cpu);
  m.impl("downsample_coords", &downsample_coords);
}
#ifdef PCGRASP_WITH_CUDA
TORCH_LIBRARY_IMPL(pcgrasp, CUDA, m) { m.impl("downsample_coords", &downsample_coords); }
#endif

}  // namespace pcgrasp
