// Explicitly rounded arithmetic shared by the CPU and CUDA kernels.
//
// Farthest point sampling must return the same indices on CPU and CUDA. A
// fused multiply-add rounds once where a multiply followed by an add rounds
// twice, so letting either compiler contract `a*a + b` could flip a distance
// comparison. On CUDA the __f*_rn intrinsics are never contracted; on the CPU
// the sources are compiled with -ffp-contract=off (setup.py, CMakeLists.txt).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PCG_HD __host__ __device__ __forceinline__
#else
#define PCG_HD inline
#endif

namespace pcgrasp {

// One overload per computed dtype; half types never reach the kernels.
PCG_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
PCG_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
PCG_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
PCG_HD double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
PCG_HD double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
PCG_HD double sub_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

// Squared distance between a[0..D) and b[0..D), summed in dimension order with
// every operation rounded on its own: ((d0*d0 + d1*d1) + d2*d2) + ...
template <typename T>
PCG_HD T dist2_rn(const T* a, const T* b, int64_t D) {
  T s = T(0);
  for (int64_t d = 0; d < D; ++d) {
    const T diff = sub_rn(a[d], b[d]);
    s = add_rn(s, mul_rn(diff, diff));
  }
  return s;
}

// Clamps a per-cloud length into [0, n] so a bad value never indexes out of range.
PCG_HD int64_t clamp_len(int64_t len, int64_t n) { return len < 0 ? 0 : (len > n ? n : len); }

// Strict "comes before" for neighbour candidates: smaller distance first, then
// the lower index. Used by every kNN / ball-query kernel so ties agree.
template <typename T>
PCG_HD bool before(T da, int64_t ia, T db, int64_t ib) {
  return da < db || (da == db && ia < ib);
}

// Inserts (d, i) into the sorted list (dist[0..size), idx[0..size)) of capacity
// cap, keeping the `before` order. Returns the new size.
template <typename T>
PCG_HD int64_t sorted_insert(T* dist, int64_t* idx, int64_t size, int64_t cap, T d, int64_t i) {
  if (size == cap) {
    if (!before(d, i, dist[cap - 1], idx[cap - 1])) return size;
    size = cap - 1;  // drop the current last
  }
  int64_t pos = size;
  while (pos > 0 && before(d, i, dist[pos - 1], idx[pos - 1])) {
    dist[pos] = dist[pos - 1];
    idx[pos] = idx[pos - 1];
    --pos;
  }
  dist[pos] = d;
  idx[pos] = i;
  return size + 1;
}

}  // namespace pcgrasp
