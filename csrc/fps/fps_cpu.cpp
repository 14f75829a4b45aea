#include "fps/fps.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "common/checks.h"
#include "common/fp.h"

namespace pcgrasp {
namespace {

// Updates m[0, len) with the distance of each point to centre (cx, cy, cz)
// and returns the largest value. Selected points hold -1 and stay there.
// Plain loop with ternaries and separate restrict pointers so the compiler
// vectorises it (no FMA: -ffp-contract=off); the summation order matches
// dist2_rn exactly. GCC vectorises a float max-reduction only without signed
// zeros and non-finite values: distances are >= 0 or the -1 marker, inputs are
// checked finite, and mind starts at the largest finite value, not +inf.
template <typename T>
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-signed-zeros", "finite-math-only")))
#endif
__attribute__((noinline)) T update3(const T* __restrict x, const T* __restrict y,
                                    const T* __restrict z, T* __restrict m, int64_t len, T cx,
                                    T cy, T cz) {
  T best = T(-2);
  for (int64_t i = 0; i < len; ++i) {
    const T dx = x[i] - cx, dy = y[i] - cy, dz = z[i] - cz;
    T d = dx * dx;
    d = d + dy * dy;
    d = d + dz * dz;
    const T v = m[i] < d ? m[i] : d;
    m[i] = v;
    best = best < v ? v : best;
  }
  return best;
}

template <typename T>
T update_range(const T* soa, int64_t n, int64_t D, const T* c, T* mind, int64_t lo, int64_t hi) {
  if (D == 3)
    return update3(soa + lo, soa + n + lo, soa + 2 * n + lo, mind + lo, hi - lo, c[0], c[1], c[2]);
  T best = T(-2);
  for (int64_t i = lo; i < hi; ++i) {
    T d = T(0);
    for (int64_t k = 0; k < D; ++k) {
      const T diff = soa[k * n + i] - c[k];
      d = d + diff * diff;
    }
    const T v = mind[i] < d ? mind[i] : d;
    mind[i] = v;
    best = best < v ? v : best;
  }
  return best;
}

template <typename T>
int64_t first_equal(const T* mind, int64_t lo, int64_t hi, T v) {
  for (int64_t i = lo; i < hi; ++i)
    if (mind[i] == v) return i;
  return hi;  // unreachable when v came from this range
}

// The lowest point not yet selected (one always exists while s < m <= n): the pick when no
// distance compares, i.e. NaN distances from non-finite points (reachable only with data
// checks off), so that no index ever leaves the cloud.
template <typename T>
int64_t lowest_unselected(const T* mind, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!(mind[i] == T(-1))) return i;
  return 0;
}

// Points per task when one cloud's update is split across threads.
constexpr int64_t kChunk = 32768;

template <typename T>
void fps_cloud_vanilla(const T* pts, int64_t n, int64_t D, int64_t m, int64_t start, int64_t* out,
                       bool parallel) {
  if (m <= 0) return;
  std::vector<T> soa(n * D), mind(n, std::numeric_limits<T>::max());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < D; ++k) soa[k * n + i] = pts[i * D + k];
  int64_t sel = start;
  out[0] = sel;
  mind[sel] = T(-1);
  const int64_t nchunks = (n + kChunk - 1) / kChunk;
  std::vector<T> cbest(nchunks);
  std::vector<int64_t> cidx(nchunks);
  T c[8];
  for (int64_t s = 1; s < m; ++s) {
    for (int64_t k = 0; k < D; ++k) c[k] = pts[sel * D + k];
    T best;
    if (parallel && nchunks > 1) {
      at::parallel_for(0, nchunks, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t ch = b0; ch < b1; ++ch) {
          const int64_t lo = ch * kChunk, hi = std::min(n, lo + kChunk);
          cbest[ch] = update_range(soa.data(), n, D, c, mind.data(), lo, hi);
          cidx[ch] = first_equal(mind.data(), lo, hi, cbest[ch]);
        }
      });
      int64_t best_ch = 0;
      for (int64_t ch = 1; ch < nchunks; ++ch)
        if (cbest[ch] > cbest[best_ch]) best_ch = ch;  // strict: lowest chunk wins ties
      best = cbest[best_ch];
      sel = cidx[best_ch];
    } else {
      best = update_range(soa.data(), n, D, c, mind.data(), 0, n);
      sel = first_equal(mind.data(), 0, n, best);
    }
    // distances are >= 0 and selected points -1: a best below 0 (or NaN) means no unselected
    // point compared (NaN distances), and sel may be a selected point or n
    if (!(best >= T(0)) || sel >= n) sel = lowest_unselected(mind.data(), n);
    out[s] = sel;
    mind[sel] = T(-1);
  }
}

// ---------------------------------------------------------------------------
// Bucketed exact FPS: the same indices as fps_cloud_vanilla, fewer updates.
//
// Tree: the points are sorted by Z-order (Morton) key on a cubic grid over
// the cloud's box, 32 / D bits per axis (LSD radix sort, O(n)); a node over
// a run of keys splits where the highest bit not shared by the whole run
// turns to 1. That is a k-d tree whose splits halve a grid cell, the axes
// taken in turn (x, y, z, x, ...), splits that leave a side empty skipped;
// runs of identical keys are halved by count; leaves hold <= `leaf` points.
// (A median split on the widest axis prunes about as well but its build,
// one selection per level, cost more than all the steps at 1e5..1e6
// points.) The points are stored in leaf order (SoA) with their original
// index. Every node keeps the tight box of its points, the largest mind[]
// below it and the position of the point attaining it, ties to the lowest
// original index (leaf_argmax compares the original indices).
//
// Each step, with new centre c, a node is skipped when
//     bound(c, box) >= node max,
// where bound is the squared distance from c to the box computed with the
// very operations, in the very order, of the point distance (update3 /
// update_range: d = dx*dx; d = d + dy*dy; ...), per axis with
//     diff = c < lo ? lo - c : (c > hi ? c - hi : 0).
// Exactness: for a point p of the box and an axis where c < lo <= p, the
// point's difference is fl(p - c) and p - c >= lo - c >= 0; rounding to
// nearest is monotone (x <= y implies fl(x) <= fl(y), overflow to inf
// included), so fl(p - c) >= fl(lo - c) = diff. For c > hi >= p the point
// computes fl(p - c) = -fl(c - p) (rounding is symmetric) and
// |fl(p - c)| >= fl(c - hi) = diff. Inside the slab diff = 0 <= |fl(p - c)|.
// fl(a * a) is monotone in |a| and fl(s + t) in s and t (both >= 0), so
// every partial sum, hence the bound, is <= the point's computed distance
// d(p). With bound >= max >= mind(p) for every p below the node,
// min(mind(p), d(p)) = mind(p): no point changes and the node's max and
// argmax stay valid. Otherwise the node's children are visited; a leaf runs
// the vanilla update on its points (same code, so the same values) and its
// argmax is the lowest original index holding the max. Parents take the larger max, ties to the lower original index, so
// the root holds the global max with the lowest original index: the vanilla
// rule. Selected points hold -1 < any bound; the leaf of the point selected
// last step is always revisited (its mind became -1 after the tree was
// updated). The inputs are finite (farthest_point_sample_cpu refuses others
// before any cloud is sampled), so no NaN appears: differences may overflow to inf,
// which the argument above covers. -ffp-contract=off keeps the compiler from
// fusing the bound's or the points' multiply-adds.
template <typename T, int D>
struct BucketNode {
  T lo[D], hi[D];  // tight box of the points below
  T max;           // largest mind below
  int32_t arg;     // its position (lowest original index on ties)
  int32_t beg, end;  // positions [beg, end)
  int32_t right;     // right child (the left one is the next node); -1 for a leaf
};

template <typename T, int D>
struct BucketTree {
  int64_t n = 0;
  std::vector<T> soa;          // [D][n] in leaf order
  std::vector<uint32_t> orig;  // original index of each position
  std::vector<T> mind;         // per position
  std::vector<BucketNode<T, D>> node;  // preorder
};

// Spreads the low 10 bits of v to every third bit.
inline uint32_t spread3(uint32_t v) {
  v &= 0x3ffu;
  v = (v | (v << 16)) & 0x030000ffu;
  v = (v | (v << 8)) & 0x0300f00fu;
  v = (v | (v << 4)) & 0x030c30c3u;
  v = (v | (v << 2)) & 0x09249249u;
  return v;
}

// Morton (Z-order) key << 32 | index of every point, on a cubic grid of
// 2^(32/D) cells per axis over the cloud's box. Only the tree's shape
// depends on it, never the result.
template <typename T, int D>
void morton_keys(const T* pts, int64_t n, uint64_t* kv, bool parallel) {
  constexpr int bits = 32 / D;
  double lo[D], ext = 0;
  for (int k = 0; k < D; ++k) {
    T a = pts[k], b = pts[k];
    for (int64_t i = 1; i < n; ++i) {
      const T v = pts[i * D + k];
      a = v < a ? v : a;
      b = v > b ? v : b;
    }
    lo[k] = double(a);
    ext = std::max(ext, double(b) - double(a));
  }
  const double top = double((uint64_t(1) << bits) - 1);
  const double scale = ext > 0 ? double(uint64_t(1) << bits) / ext : 0.0;
  auto body = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      uint32_t q[D];
      for (int k = 0; k < D; ++k) q[k] = uint32_t(std::min(top, (double(pts[i * D + k]) - lo[k]) * scale));
      uint64_t key = 0;
      if constexpr (D == 3) {
        key = spread3(q[0]) | (spread3(q[1]) << 1) | (spread3(q[2]) << 2);
      } else {
        for (int j = 0; j < bits; ++j)
          for (int k = 0; k < D; ++k) key |= uint64_t((q[k] >> j) & 1u) << (j * D + k);
      }
      kv[i] = (key << 32) | uint64_t(i);
    }
  };
  if (parallel) at::parallel_for(0, n, 65536, body);
  else body(0, n);
}

// Stable LSD radix sort of kv by the low `bits` bits of the key (kv >> 32).
inline void radix_sort_keys(std::vector<uint64_t>& kv, int bits) {
  constexpr int kDigit = 11, kBuckets = 1 << kDigit;
  const int64_t n = int64_t(kv.size());
  std::vector<uint64_t> tmp(n);
  std::vector<int64_t> count(kBuckets);
  for (int shift = 0; shift < bits; shift += kDigit) {
    std::fill(count.begin(), count.end(), 0);
    for (int64_t i = 0; i < n; ++i) ++count[(kv[i] >> (32 + shift)) & (kBuckets - 1)];
    int64_t sum = 0;
    for (int b = 0; b < kBuckets; ++b) {
      const int64_t c = count[b];
      count[b] = sum;
      sum += c;
    }
    for (int64_t i = 0; i < n; ++i) tmp[count[(kv[i] >> (32 + shift)) & (kBuckets - 1)]++] = kv[i];
    kv.swap(tmp);
  }
}

// Appends the subtree over sorted positions [a, b) whose keys agree above
// bit `bit`: split where that bit turns to 1 (an octree-like cell split,
// one axis at a time); levels where the bit does not change are skipped;
// identical keys are halved by count. Leaves hold <= leaf points.
template <typename T, int D>
int32_t bucket_node(BucketTree<T, D>& t, const uint64_t* kv, int64_t a, int64_t b, int bit, int64_t leaf) {
  const int32_t id = int32_t(t.node.size());
  t.node.emplace_back();
  t.node[id].beg = int32_t(a);
  t.node[id].end = int32_t(b);
  t.node[id].right = -1;
  if (b - a <= leaf) return id;
  int64_t split = a + (b - a) / 2;
  for (; bit >= 0; --bit) {
    const uint64_t mask = uint64_t(1) << (32 + bit);
    if ((kv[a] & mask) || !(kv[b - 1] & mask)) continue;  // the same bit throughout
    split = std::partition_point(kv + a, kv + b, [mask](uint64_t v) { return !(v & mask); }) - kv;
    break;
  }
  bucket_node(t, kv, a, split, bit - 1, leaf);
  const int32_t r = bucket_node(t, kv, split, b, bit - 1, leaf);
  t.node[id].right = r;
  return id;
}

// The lowest original index among the positions of [a, b) holding v.
template <typename T, int D>
inline int64_t leaf_argmax(const BucketTree<T, D>& t, int64_t a, int64_t b, T v) {
  int64_t bp = first_equal(t.mind.data(), a, b, v);
  uint32_t bo = t.orig[bp];
  for (int64_t p = bp + 1; p < b; ++p)
    if (t.mind[p] == v && t.orig[p] < bo) {
      bo = t.orig[p];
      bp = p;
    }
  return bp;
}

// An inner node takes the better of its children: larger max, then lower original index.
template <typename T, int D>
inline void bucket_pull(BucketTree<T, D>& t, BucketNode<T, D>& nd, const BucketNode<T, D>& l,
                        const BucketNode<T, D>& r) {
  const bool left = l.max > r.max || (l.max == r.max && t.orig[l.arg] < t.orig[r.arg]);
  nd.max = left ? l.max : r.max;
  nd.arg = left ? l.arg : r.arg;
}

// Lower bound of the distances from c to the points of the node's box: see
// the comment above.
template <typename T, int D>
inline T bucket_bound(const BucketNode<T, D>& nd, const T* c) {
  T s = T(0);
  for (int k = 0; k < D; ++k) {
    const T diff = c[k] < nd.lo[k] ? nd.lo[k] - c[k] : (c[k] > nd.hi[k] ? c[k] - nd.hi[k] : T(0));
    s = k == 0 ? diff * diff : s + diff * diff;
  }
  return s;
}

// Whether a node can change: it holds the centre's position sp (always
// revisited: mind[sp] just became -1), or the bound is below its max.
template <typename T, int D>
inline bool bucket_open(const BucketNode<T, D>& nd, const T* c, int64_t sp) {
  return (nd.beg <= sp && sp < nd.end) || bucket_bound(nd, c) < nd.max;
}

// Updates the open node `id` for centre c.
template <typename T, int D>
void bucket_visit(BucketTree<T, D>& t, int64_t id, const T* c, int64_t sp) {
  BucketNode<T, D>& nd = t.node[id];
  if (nd.right < 0) {
    const int64_t a = nd.beg, b = nd.end;
    const T best = update_range(t.soa.data(), t.n, int64_t(D), c, t.mind.data(), a, b);
    nd.max = best;
    nd.arg = int32_t(leaf_argmax(t, a, b, best));
    return;
  }
  const BucketNode<T, D>& l = t.node[id + 1];
  const BucketNode<T, D>& r = t.node[nd.right];
  const bool ol = bucket_open(l, c, sp), orr = bucket_open(r, c, sp);
  if (!ol && !orr) return;
  if (ol) bucket_visit(t, id + 1, c, sp);
  if (orr) bucket_visit(t, nd.right, c, sp);
  bucket_pull(t, nd, l, r);
}

// Always true (nothing to refuse: the caller checked the points are finite).
template <typename T, int D>
bool fps_cloud_bucket_d(const T* pts, int64_t n, int64_t m, int64_t start, int64_t* out,
                        bool parallel, int64_t leaf) {
  BucketTree<T, D> t;  // the points are finite: farthest_point_sample_cpu checked them
  t.n = n;
  // 1. Z-order, then the tree of its cells
  std::vector<uint64_t> kv(n);
  morton_keys<T, D>(pts, n, kv.data(), parallel);
  radix_sort_keys(kv, (32 / D) * D);
  t.node.reserve(4 * (n / leaf) + 16);
  bucket_node(t, kv.data(), 0, n, (32 / D) * D - 1, leaf);
  const int64_t nodes = int64_t(t.node.size());
  // 2. points in leaf order (SoA)
  t.orig.resize(n);
  t.soa.resize(n * D);
  auto gather = [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const uint32_t i = uint32_t(kv[p]);
      t.orig[p] = i;
      for (int k = 0; k < D; ++k) t.soa[k * n + p] = pts[int64_t(i) * D + k];
    }
  };
  if (parallel) at::parallel_for(0, n, 65536, gather);
  else gather(0, n);
  std::vector<uint64_t>().swap(kv);
  int64_t sp = 0;
  while (t.orig[sp] != uint64_t(start)) ++sp;
  // 3. tight boxes (leaves from their points, inner nodes as unions of their
  //    children, which come after them in preorder) and every node's max for
  //    the initial mind[]
  t.mind.assign(n, std::numeric_limits<T>::max());
  t.mind[sp] = T(-1);
  for (int64_t id = nodes - 1; id >= 0; --id) {
    BucketNode<T, D>& nd = t.node[id];
    if (nd.right < 0) {
      const int64_t a = nd.beg, b = nd.end;
      for (int k = 0; k < D; ++k) {
        const T* x = t.soa.data() + k * n;
        T l = x[a], h = x[a];
        for (int64_t p = a + 1; p < b; ++p) {
          l = x[p] < l ? x[p] : l;
          h = x[p] > h ? x[p] : h;
        }
        nd.lo[k] = l;
        nd.hi[k] = h;
      }
      T best = T(-2);
      for (int64_t p = a; p < b; ++p) best = t.mind[p] > best ? t.mind[p] : best;
      nd.max = best;
      nd.arg = int32_t(leaf_argmax(t, a, b, best));
    } else {
      const BucketNode<T, D>& l = t.node[id + 1];
      const BucketNode<T, D>& r = t.node[nd.right];
      for (int k = 0; k < D; ++k) {
        nd.lo[k] = std::min(l.lo[k], r.lo[k]);
        nd.hi[k] = std::max(l.hi[k], r.hi[k]);
      }
      bucket_pull(t, nd, l, r);
    }
  }
  out[0] = start;
  T c[D];
  for (int64_t s = 1; s < m; ++s) {
    for (int k = 0; k < D; ++k) c[k] = t.soa[k * n + sp];
    bucket_visit(t, 0, c, sp);  // the root holds sp: always open
    sp = t.node[0].arg;
    out[s] = t.orig[sp];
    t.mind[sp] = T(-1);
  }
  return true;
}

template <typename T>
bool fps_cloud_bucket(const T* pts, int64_t n, int64_t D, int64_t m, int64_t start, int64_t* out,
                      bool parallel, int64_t leaf) {
  switch (D) {
    case 1: return fps_cloud_bucket_d<T, 1>(pts, n, m, start, out, parallel, leaf);
    case 2: return fps_cloud_bucket_d<T, 2>(pts, n, m, start, out, parallel, leaf);
    case 3: return fps_cloud_bucket_d<T, 3>(pts, n, m, start, out, parallel, leaf);
    case 4: return fps_cloud_bucket_d<T, 4>(pts, n, m, start, out, parallel, leaf);
    case 5: return fps_cloud_bucket_d<T, 5>(pts, n, m, start, out, parallel, leaf);
    case 6: return fps_cloud_bucket_d<T, 6>(pts, n, m, start, out, parallel, leaf);
    case 7: return fps_cloud_bucket_d<T, 7>(pts, n, m, start, out, parallel, leaf);
    case 8: return fps_cloud_bucket_d<T, 8>(pts, n, m, start, out, parallel, leaf);
    default: return false;
  }
}

// Private switches for tests and tuning, read once:
//   PCGRASP_FPS_CPU=vanilla|bucket|auto (default auto: bucket for large clouds)
//   PCGRASP_FPS_LEAF=<points per leaf>  (default kBucketLeaf)
enum class FpsPath { kAuto, kVanilla, kBucket };

// One thread, CPU time, 1e6 -> 4096 / 1e5 -> 1024 samples: leaves of 24: 154 / 11.6 ms,
// 32: 142 / 10.2, 48: 129 / 9.5, 64: 129 / 8.5, 96: 128 / 8.5.
constexpr int64_t kBucketLeaf = 64;

struct FpsConfig {
  FpsPath path = FpsPath::kAuto;
  int64_t leaf = kBucketLeaf;
};

inline const FpsConfig& fps_config() {
  static const FpsConfig cfg = [] {
    FpsConfig c;
    if (const char* e = std::getenv("PCGRASP_FPS_CPU")) {
      const std::string v(e);
      if (v == "vanilla") c.path = FpsPath::kVanilla;
      else if (v == "bucket") c.path = FpsPath::kBucket;
    }
    if (const char* e = std::getenv("PCGRASP_FPS_LEAF")) {
      const long v = std::strtol(e, nullptr, 10);
      if (v >= 1 && v <= (1 << 20)) c.leaf = v;
    }
    return c;
  }();
  return cfg;
}

// Auto selection. Per cloud the vanilla path costs ~ n * m updates, the
// bucketed one a build of ~ n (Z-order sort) plus ~ n log m updates and the
// tree walks. Measured on a 2-vCPU AMD EPYC, one thread, D = 3, uniform
// points, vanilla / bucket time: n = 2048: 0.74 at m = 128, 1.12 at 256;
// n = 4096: 0.89 at 128, 1.10 at 192; n = 8192: 0.77 at 96, 1.07 at 128;
// n = 16384..65536: 0.87-1.02 at 96, 1.11-1.19 at 128. So the bucket path
// runs once m >= 128 + 2^18 / n (n >= 2048). A single cloud split across
// threads (vanilla's chunked update; the bucketed steps are serial) needs
// that many times more samples.
constexpr int64_t kBucketMinPoints = 2048;

inline bool bucket_pays(int64_t n, int64_t m, bool parallel) {
  if (n < kBucketMinPoints) return false;
  int64_t need = 128 + (int64_t(1) << 18) / n;
  if (parallel) need *= std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (n + kChunk - 1) / kChunk));
  return m >= need;
}

template <typename T>
void fps_cloud(const T* pts, int64_t n, int64_t D, int64_t m, int64_t start, int64_t* out,
               bool parallel) {
  if (m <= 0) return;
  const FpsConfig& cfg = fps_config();
  const bool fits = n <= int64_t(std::numeric_limits<int32_t>::max()) && m > 1;
  const bool bucket = fits && (cfg.path == FpsPath::kBucket ||
                               (cfg.path == FpsPath::kAuto && bucket_pays(n, m, parallel)));
  if (bucket && fps_cloud_bucket<T>(pts, n, D, m, start, out, parallel, cfg.leaf)) return;
  fps_cloud_vanilla<T>(pts, n, D, m, start, out, parallel);
}

}  // namespace

void fps_check_start(const at::Tensor& start, const at::Tensor& lengths, int64_t N) {
  check_same_device(start, lengths, "start", "lengths");
  if (start.numel() == 0) return;
  const at::Tensor n = lengths.clamp(0, N);
  const at::Tensor bad = ((start < 0) | (start >= n)) & (n > 0);
  if (!bad.any().item<bool>()) return;  // the one sync on CUDA
  const int64_t b = bad.nonzero()[0][0].item<int64_t>();
  TORCH_CHECK_VALUE(false, "start[", b, "]=", start[b].item<int64_t>(), " is outside the cloud's ",
                    n[b].item<int64_t>(), " valid points");
}

at::Tensor farthest_point_sample_cpu(const at::Tensor& points_in, const at::Tensor& lengths_in,
                                     const at::Tensor& counts_in, const c10::optional<at::Tensor>& start_in,
                                     int64_t K) {
  check_cloud(points_in, "points");
  const int64_t B = points_in.size(0), N = points_in.size(1), D = points_in.size(2);
  check_lengths(lengths_in, B, "lengths");
  check_lengths(counts_in, B, "k");
  const bool given = start_in.has_value() && start_in->defined();
  if (given) {
    check_lengths(*start_in, B, "start");
    fps_check_start(*start_in, lengths_in, N);
  }
  TORCH_CHECK(K >= 0, "k must be non-negative, got ", K);
  TORCH_CHECK(D >= 1 && D <= 8, "points must have 1 <= D <= 8, got D=", D);
  const at::Tensor points = to_compute(points_in);
  const at::Tensor lengths = lengths_in.contiguous(), counts = counts_in.contiguous();
  const at::Tensor start = given ? start_in->contiguous() : at::zeros({B}, lengths.options());
  at::Tensor idx = at::full({B, K}, -1, points.options().dtype(at::kLong));
  if (B == 0 || K == 0) return idx;
  const int64_t* len = lengths.data_ptr<int64_t>();
  const int64_t* cnt = counts.data_ptr<int64_t>();
  const int64_t* st = start.data_ptr<int64_t>();
  int64_t* out = idx.data_ptr<int64_t>();
  // Many clouds: one cloud per task. Few clouds: parallelise inside each cloud.
  const bool inner = B < at::get_num_threads();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "farthest_point_sample_cpu", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    // The Python check refuses non-finite points unless value checks are off; this one always runs
    // (a pass over the valid points, ~1 % of a large cloud's sampling): NaN distances would break
    // the running minimum (update3 is built finite-math-only) and select a point twice or past the
    // cloud. x - x is 0 for a finite x and NaN otherwise, and the loop vectorises.
    bool finite = true;
    for (int64_t b = 0; b < B && finite; ++b) {
      const scalar_t* q = p + b * N * D;
      const int64_t e = clamp_len(len[b], N) * D;
      bool ok = true;
      for (int64_t i = 0; i < e; ++i) ok &= (q[i] - q[i]) == scalar_t(0);
      finite = ok;
    }
    TORCH_CHECK_VALUE(finite, "points must be finite (a NaN or inf coordinate in a cloud's valid points)");
    auto run = [&](int64_t b) {
      const int64_t n = clamp_len(len[b], N);
      const int64_t m = std::min(std::min(std::max<int64_t>(cnt[b], 0), K), n);
      fps_cloud<scalar_t>(p + b * N * D, n, D, m, st[b], out + b * K, inner);
    };
    if (inner) {
      for (int64_t b = 0; b < B; ++b) run(b);
    } else {
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) run(b);
      });
    }
  });
  return idx;
}

TORCH_LIBRARY_IMPL(pcgrasp, CPU, m) {
  m.impl("farthest_point_sample", &farthest_point_sample_cpu);
}

}  // namespace pcgrasp
