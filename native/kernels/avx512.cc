// AVX-512 kernel, 16 lanes, masked loads and stores for the tail so no scalar code runs on the
// hot path. Per-function target attribute; dispatch.cc checks the CPU first.
#include "kernels/kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define PMA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

namespace pma {
namespace {

PMA_AVX512 inline __m512 load16(const uint8_t* p, DType t, size_t j, __mmask16 m) {
  switch (t) {
    case DType::BF16: {
      const __m256i h = _mm256_maskz_loadu_epi16(m, p + 2 * j);
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case DType::F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + 2 * j));
    default: return _mm512_maskz_loadu_ps(m, p + 4 * j);
  }
}

PMA_AVX512 inline void store16(uint8_t* p, DType t, size_t j, __mmask16 m, __m512 acc) {
  const __mmask16 nan = _mm512_cmp_ps_mask(acc, acc, _CMP_UNORD_Q);
  switch (t) {
    case DType::BF16: {
      const __m512i u = _mm512_castps_si512(acc);
      const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
      __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
      r = _mm512_srli_epi32(r, 16);
      r = _mm512_mask_blend_epi32(nan, r, _mm512_set1_epi32(0x7FC0));
      _mm512_mask_cvtepi32_storeu_epi16(p + 2 * j, m, r);
      break;
    }
    case DType::F16: {
      const __m512 c = _mm512_mask_blend_ps(nan, acc, _mm512_castsi512_ps(_mm512_set1_epi32(0x7FC00000)));
      const __m256i h = _mm512_cvtps_ph(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm256_mask_storeu_epi16(p + 2 * j, m, h);
      break;
    }
    default: {
      const __m512 c = _mm512_mask_blend_ps(nan, acc, _mm512_castsi512_ps(_mm512_set1_epi32(0x7FC00000)));
      _mm512_mask_storeu_ps(p + 4 * j, m, c);
      break;
    }
  }
}

}  // namespace

PMA_AVX512 void merge_avx512(const MergeArgs& a) {
  if (a.acc_f64 || a.in == DType::F64 || a.out == DType::F64) return merge_scalar(a);
  const __mmask16 all = 0xFFFF;
  size_t j = 0;
  for (; j + 64 <= a.count; j += 64) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int k = 0; k < a.n; ++k) {
      const __m512 w = _mm512_set1_ps(a.w32[k]);
      const uint8_t* s = a.src[k];
      acc0 = _mm512_fmadd_ps(w, load16(s, a.in, j, all), acc0);
      acc1 = _mm512_fmadd_ps(w, load16(s, a.in, j + 16, all), acc1);
      acc2 = _mm512_fmadd_ps(w, load16(s, a.in, j + 32, all), acc2);
      acc3 = _mm512_fmadd_ps(w, load16(s, a.in, j + 48, all), acc3);
    }
    store16(a.dst, a.out, j, all, acc0);
    store16(a.dst, a.out, j + 16, all, acc1);
    store16(a.dst, a.out, j + 32, all, acc2);
    store16(a.dst, a.out, j + 48, all, acc3);
  }
  for (; j < a.count; j += 16) {
    const size_t left = a.count - j;
    const __mmask16 m = left >= 16 ? all : __mmask16((1u << left) - 1u);
    __m512 acc = _mm512_setzero_ps();
    for (int k = 0; k < a.n; ++k) acc = _mm512_fmadd_ps(_mm512_set1_ps(a.w32[k]), load16(a.src[k], a.in, j, m), acc);
    store16(a.dst, a.out, j, m, acc);
  }
}

}  // namespace pma

#else
namespace pma {
void merge_avx512(const MergeArgs& a) { merge_scalar(a); }
}  // namespace pma
#endif
