// Row-major GEMM on the CPU for kernels that multiply small blocks inside their own
// at::parallel_for loops: C[m, n] = A[m, k] @ B[k, n] + beta * C (A or B read transposed on
// request, leading dimensions in elements).
//
// It calls the Fortran BLAS symbols sgemm_ / dgemm_ that torch's own CPU library exports (MKL
// on x86 wheels, OpenBLAS elsewhere); they are declared weak, so a torch build without them
// still loads this library and falls back to at::mm on wrapped pointers. Called from inside a
// parallel region, the BLAS runs on the calling thread only (nested OpenMP is off), so each
// block is one thread's work and the result does not depend on the thread count.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

extern "C" {
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

namespace pcgrasp {

namespace blas_detail {

template <typename T>
inline void gemm_fallback(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* A, int64_t lda,
                          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  // A is [m, k] (or stored [k, m] when ta), B is [k, n] (or [n, k] when tb).
  at::Tensor a = ta ? at::from_blob(const_cast<T*>(A), {k, m}, {lda, 1}, opt).t()
                    : at::from_blob(const_cast<T*>(A), {m, k}, {lda, 1}, opt);
  at::Tensor b = tb ? at::from_blob(const_cast<T*>(B), {n, k}, {ldb, 1}, opt).t()
                    : at::from_blob(const_cast<T*>(B), {k, n}, {ldb, 1}, opt);
  at::Tensor c = at::from_blob(C, {m, n}, {ldc, 1}, opt);
  if (beta == T(0)) {
    c.copy_(at::mm(a, b));
  } else {
    c.mul_(beta).add_(at::mm(a, b));
  }
}

}  // namespace blas_detail

inline bool blas_available() { return sgemm_ != nullptr && dgemm_ != nullptr; }

// Row-major C = op(A) @ op(B) + beta * C. Row-major C = A B is column-major C^T = B^T A^T,
// so the Fortran call swaps the operands.
template <typename T>
inline void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* A, int64_t lda,
                    const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
    return;
  }
  const char ca = ta ? 'T' : 'N', cb = tb ? 'T' : 'N';
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  const int ilda = static_cast<int>(lda), ildb = static_cast<int>(ldb), ildc = static_cast<int>(ldc);
  const T one = T(1);
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_) return sgemm_(&cb, &ca, &in, &im, &ik, &one, B, &ildb, A, &ilda, &beta, C, &ildc);
  } else {
    if (dgemm_) return dgemm_(&cb, &ca, &in, &im, &ik, &one, B, &ildb, A, &ilda, &beta, C, &ildc);
  }
  blas_detail::gemm_fallback(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace pcgrasp
