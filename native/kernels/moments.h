// The products behind `pma analyze` (engine/analyze.cc): for n vectors v_0 .. v_(n-1) of float64,
// the sums of the upper triangle of their Gram matrix, sum_j v_a[j] * v_b[j] for a <= b, each kept
// as 8 partial sums: lane u takes the elements j = u (mod 8), in the order of j. No napi.h here.
#pragma once
#include <cstddef>
#include <cstdint>

#include "dtype.h"
#include "kernels/kernels.h"

namespace pma {

// out[j] = x[j] - minus[j] in float64 for the m values x of dtype t at raw (bf16, f16, f32 or f64),
// or x[j] alone when minus is null. Exact widening, then one subtraction: the same on every kernel.
void to_f64(Kernel k, const uint8_t* raw, DType t, size_t m, const double* minus, double* out);

// For each pair (a, b), a <= b, row by row (pair p = the p-th such pair), and j < m (a multiple
// of 8): acc[8p + j % 8] = fma(v_a[j], v_b[j], acc[8p + j % 8]), j ascending: one rounding per
// product and sum, in every kernel (std::fma in the scalar one), so every kernel gives the same
// bits. (A multiply then an add, as before 2026-12-01, cost a fifth more of `pma analyze`'s time:
// docs/performance.md.) The SIMD kernels only run several pairs at once: their sums are
// independent chains, which hides each fma's latency.
void gram_lanes(Kernel k, const double* const* v, int n, size_t m, double* acc);

// gram_lanes of v_0 = x_(n-1), v_k = x_k - x_0 (1 <= k < n), straight from the n inputs' values x_k
// of dtype t at raw[k]: the same bits as to_f64 then gram_lanes, without storing the vectors.
// Where the kernel can hold every sum in registers (AVX-512, n <= 6); returns false otherwise, and
// does nothing.
bool gram_raw(Kernel k, const uint8_t* const* raw, DType t, int n, size_t m, double* acc);

}  // namespace pma
