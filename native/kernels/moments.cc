// to_f64, gram_lanes and gram_raw (moments.h) for each CPU kernel. gram_lanes walks the row a of
// pairs in groups (a, b .. b + G - 1): one load of v_a serves G products, and G sums in registers
// hide the fmas' latency (a single sum waits on each fma: about 4 cycles per 8 elements). The
// lanes are those of one 512-bit register, or two 256-bit ones, so the SIMD order of additions
// is the scalar one.
#include "kernels/moments.h"

#include <cmath>

#include "kernels/element.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace pma {
namespace {

// Values [from, m) one at a time: the scalar kernel, and the SIMD kernels' last m % 8.
void to_f64_scalar(const uint8_t* raw, DType t, size_t from, size_t m, const double* minus, double* out) {
  for (size_t j = from; j < m; ++j) out[j] = minus != nullptr ? load_f64(raw, t, j) - minus[j] : load_f64(raw, t, j);
}

void gram_lanes_scalar(const double* const* v, int n, size_t m, double* acc) {
  for (int a = 0; a < n; ++a) {
    for (int b = a; b < n; ++b, acc += 8) {
      for (size_t j = 0; j < m; j += 8) {
        for (int u = 0; u < 8; ++u) acc[u] = std::fma(v[a][j + u], v[b][j + u], acc[u]);
      }
    }
  }
}

#if defined(__x86_64__) || defined(_M_X64)
#define PMA_MOMENTS_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define PMA_MOMENTS_AVX2 __attribute__((target("avx2,fma,f16c")))

template <int G>
PMA_MOMENTS_AVX512 inline void group_avx512(const double* x, const double* const* y, size_t m, double* acc) {
  __m512d s[G];
  for (int g = 0; g < G; ++g) s[g] = _mm512_loadu_pd(acc + 8 * g);
  for (size_t j = 0; j < m; j += 8) {
    const __m512d a = _mm512_loadu_pd(x + j);
    for (int g = 0; g < G; ++g) s[g] = _mm512_fmadd_pd(a, _mm512_loadu_pd(y[g] + j), s[g]);
  }
  for (int g = 0; g < G; ++g) _mm512_storeu_pd(acc + 8 * g, s[g]);
}

// Lanes 0-3 in one register, 4-7 in the other.
template <int G>
PMA_MOMENTS_AVX2 inline void group_avx2(const double* x, const double* const* y, size_t m, double* acc) {
  __m256d lo[G], hi[G];
  for (int g = 0; g < G; ++g) {
    lo[g] = _mm256_loadu_pd(acc + 8 * g);
    hi[g] = _mm256_loadu_pd(acc + 8 * g + 4);
  }
  for (size_t j = 0; j < m; j += 8) {
    const __m256d a0 = _mm256_loadu_pd(x + j), a1 = _mm256_loadu_pd(x + j + 4);
    for (int g = 0; g < G; ++g) {
      lo[g] = _mm256_fmadd_pd(a0, _mm256_loadu_pd(y[g] + j), lo[g]);
      hi[g] = _mm256_fmadd_pd(a1, _mm256_loadu_pd(y[g] + j + 4), hi[g]);
    }
  }
  for (int g = 0; g < G; ++g) {
    _mm256_storeu_pd(acc + 8 * g, lo[g]);
    _mm256_storeu_pd(acc + 8 * g + 4, hi[g]);
  }
}

PMA_MOMENTS_AVX512 inline __m512d load8_avx512(const uint8_t* raw, DType t, size_t j) {
  switch (t) {
    case DType::BF16: {
      const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(raw + 2 * j)));
      return _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    case DType::F16:
      return _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(raw + 2 * j))));
    case DType::F32: return _mm512_cvtps_pd(_mm256_loadu_ps(reinterpret_cast<const float*>(raw + 4 * j)));
    case DType::F64: return _mm512_loadu_pd(reinterpret_cast<const double*>(raw + 8 * j));
  }
  return _mm512_setzero_pd();
}

PMA_MOMENTS_AVX2 inline __m256d load4_avx2(const uint8_t* raw, DType t, size_t j) {
  switch (t) {
    case DType::BF16: {
      const __m128i w = _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(raw + 2 * j)));
      return _mm256_cvtps_pd(_mm_castsi128_ps(_mm_slli_epi32(w, 16)));
    }
    case DType::F16:
      return _mm256_cvtps_pd(_mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(raw + 2 * j))));
    case DType::F32: return _mm256_cvtps_pd(_mm_loadu_ps(reinterpret_cast<const float*>(raw + 4 * j)));
    case DType::F64: return _mm256_loadu_pd(reinterpret_cast<const double*>(raw + 8 * j));
  }
  return _mm256_setzero_pd();
}

// One loop per dtype and case, so that the switch is not in the loop.
template <DType T, bool Minus>
PMA_MOMENTS_AVX512 size_t widen_avx512(const uint8_t* raw, size_t m, const double* minus, double* out) {
  size_t j = 0;
  for (; j + 8 <= m; j += 8) {
    const __m512d x = load8_avx512(raw, T, j);
    _mm512_storeu_pd(out + j, Minus ? _mm512_sub_pd(x, _mm512_loadu_pd(minus + j)) : x);
  }
  return j;
}

template <DType T, bool Minus>
PMA_MOMENTS_AVX2 size_t widen_avx2(const uint8_t* raw, size_t m, const double* minus, double* out) {
  size_t j = 0;
  for (; j + 4 <= m; j += 4) {
    const __m256d x = load4_avx2(raw, T, j);
    _mm256_storeu_pd(out + j, Minus ? _mm256_sub_pd(x, _mm256_loadu_pd(minus + j)) : x);
  }
  return j;
}

#define PMA_WIDEN(ISA)                                                                                  \
  switch (t) {                                                                                          \
    case DType::BF16:                                                                                   \
      j = d ? ISA<DType::BF16, true>(raw, m, minus, out) : ISA<DType::BF16, false>(raw, m, minus, out); \
      break;                                                                                            \
    case DType::F16:                                                                                    \
      j = d ? ISA<DType::F16, true>(raw, m, minus, out) : ISA<DType::F16, false>(raw, m, minus, out);   \
      break;                                                                                            \
    case DType::F32:                                                                                    \
      j = d ? ISA<DType::F32, true>(raw, m, minus, out) : ISA<DType::F32, false>(raw, m, minus, out);   \
      break;                                                                                            \
    case DType::F64:                                                                                    \
      j = d ? ISA<DType::F64, true>(raw, m, minus, out) : ISA<DType::F64, false>(raw, m, minus, out);   \
      break;                                                                                            \
  }

PMA_MOMENTS_AVX512 void to_f64_avx512(const uint8_t* raw, DType t, size_t m, const double* minus, double* out) {
  const bool d = minus != nullptr;
  size_t j = 0;
  PMA_WIDEN(widen_avx512)
  to_f64_scalar(raw, t, j, m, minus, out);
}

PMA_MOMENTS_AVX2 void to_f64_avx2(const uint8_t* raw, DType t, size_t m, const double* minus, double* out) {
  const bool d = minus != nullptr;
  size_t j = 0;
  PMA_WIDEN(widen_avx2)
  to_f64_scalar(raw, t, j, m, minus, out);
}

// Every sum in a register: n(n+1)/2 of them and the n vectors, within AVX-512's 32 for n <= 6.
template <DType T, int N>
PMA_MOMENTS_AVX512 void raw_avx512(const uint8_t* const* raw, size_t m, double* acc) {
  constexpr int P = N * (N + 1) / 2;
  __m512d s[P];
  for (int p = 0; p < P; ++p) s[p] = _mm512_loadu_pd(acc + 8 * p);
  for (size_t j = 0; j < m; j += 8) {
    const __m512d x0 = load8_avx512(raw[0], T, j);
    __m512d v[N];
    v[0] = load8_avx512(raw[N - 1], T, j);
    for (int k = 1; k < N; ++k) v[k] = _mm512_sub_pd(load8_avx512(raw[k], T, j), x0);
    int p = 0;
    for (int a = 0; a < N; ++a) {
      for (int b = a; b < N; ++b, ++p) s[p] = _mm512_fmadd_pd(v[a], v[b], s[p]);
    }
  }
  for (int p = 0; p < P; ++p) _mm512_storeu_pd(acc + 8 * p, s[p]);
}

template <DType T>
PMA_MOMENTS_AVX512 bool raw_avx512_n(const uint8_t* const* raw, int n, size_t m, double* acc) {
  switch (n) {
    case 2: raw_avx512<T, 2>(raw, m, acc); return true;
    case 3: raw_avx512<T, 3>(raw, m, acc); return true;
    case 4: raw_avx512<T, 4>(raw, m, acc); return true;
    case 5: raw_avx512<T, 5>(raw, m, acc); return true;
    case 6: raw_avx512<T, 6>(raw, m, acc); return true;
    default: return false;
  }
}

PMA_MOMENTS_AVX512 bool gram_raw_avx512(const uint8_t* const* raw, DType t, int n, size_t m, double* acc) {
  switch (t) {
    case DType::BF16: return raw_avx512_n<DType::BF16>(raw, n, m, acc);
    case DType::F16: return raw_avx512_n<DType::F16>(raw, n, m, acc);
    case DType::F32: return raw_avx512_n<DType::F32>(raw, n, m, acc);
    case DType::F64: return raw_avx512_n<DType::F64>(raw, n, m, acc);
  }
  return false;
}

// 8 groups of sums fit AVX-512's 32 registers with room for the loads; AVX2's 16 hold 4 (8 halves).
PMA_MOMENTS_AVX512 void gram_lanes_avx512(const double* const* v, int n, size_t m, double* acc) {
  for (int a = 0; a < n; ++a) {
    int b = a;
    for (; n - b >= 8; b += 8, acc += 64) group_avx512<8>(v[a], v + b, m, acc);
    switch (n - b) {
      case 7: group_avx512<7>(v[a], v + b, m, acc); break;
      case 6: group_avx512<6>(v[a], v + b, m, acc); break;
      case 5: group_avx512<5>(v[a], v + b, m, acc); break;
      case 4: group_avx512<4>(v[a], v + b, m, acc); break;
      case 3: group_avx512<3>(v[a], v + b, m, acc); break;
      case 2: group_avx512<2>(v[a], v + b, m, acc); break;
      case 1: group_avx512<1>(v[a], v + b, m, acc); break;
      default: break;
    }
    acc += 8 * (n - b);
  }
}

PMA_MOMENTS_AVX2 void gram_lanes_avx2(const double* const* v, int n, size_t m, double* acc) {
  for (int a = 0; a < n; ++a) {
    int b = a;
    for (; n - b >= 4; b += 4, acc += 32) group_avx2<4>(v[a], v + b, m, acc);
    switch (n - b) {
      case 3: group_avx2<3>(v[a], v + b, m, acc); break;
      case 2: group_avx2<2>(v[a], v + b, m, acc); break;
      case 1: group_avx2<1>(v[a], v + b, m, acc); break;
      default: break;
    }
    acc += 8 * (n - b);
  }
}
#else
bool gram_raw_avx512(const uint8_t* const*, DType, int, size_t, double*) { return false; }
void to_f64_avx512(const uint8_t* raw, DType t, size_t m, const double* minus, double* out) {
  to_f64_scalar(raw, t, 0, m, minus, out);
}
void to_f64_avx2(const uint8_t* raw, DType t, size_t m, const double* minus, double* out) {
  to_f64_scalar(raw, t, 0, m, minus, out);
}
void gram_lanes_avx512(const double* const* v, int n, size_t m, double* acc) { gram_lanes_scalar(v, n, m, acc); }
void gram_lanes_avx2(const double* const* v, int n, size_t m, double* acc) { gram_lanes_scalar(v, n, m, acc); }
#endif

}  // namespace

void to_f64(Kernel k, const uint8_t* raw, DType t, size_t m, const double* minus, double* out) {
  switch (k) {
    case Kernel::Avx512: return to_f64_avx512(raw, t, m, minus, out);
    case Kernel::Avx2: return to_f64_avx2(raw, t, m, minus, out);
    case Kernel::Scalar: return to_f64_scalar(raw, t, 0, m, minus, out);
  }
}

bool gram_raw(Kernel k, const uint8_t* const* raw, DType t, int n, size_t m, double* acc) {
  return k == Kernel::Avx512 && gram_raw_avx512(raw, t, n, m, acc);
}

void gram_lanes(Kernel k, const double* const* v, int n, size_t m, double* acc) {
  switch (k) {
    case Kernel::Avx512: return gram_lanes_avx512(v, n, m, acc);
    case Kernel::Avx2: return gram_lanes_avx2(v, n, m, acc);
    case Kernel::Scalar: return gram_lanes_scalar(v, n, m, acc);
  }
}

}  // namespace pma
