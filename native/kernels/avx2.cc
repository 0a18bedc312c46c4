// AVX2 + FMA + F16C kernel, 8 lanes. Compiled with a per-function target attribute so one binary
// serves every x86-64 CPU; dispatch.cc calls it only when the CPU reports the features.
#include "kernels/kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <vector>

#define PMA_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace pma {
namespace {

PMA_AVX2 inline __m256 load8(const uint8_t* p, DType t, size_t j) {
  switch (t) {
    case DType::BF16: {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * j));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case DType::F16: return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * j)));
    default: return _mm256_loadu_ps(reinterpret_cast<const float*>(p + 4 * j));
  }
}

PMA_AVX2 inline void store8(uint8_t* p, DType t, size_t j, __m256 acc) {
  const __m256 nan = _mm256_cmp_ps(acc, acc, _CMP_UNORD_Q);
  switch (t) {
    case DType::BF16: {
      const __m256i u = _mm256_castps_si256(acc);
      const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
      __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
      r = _mm256_srli_epi32(r, 16);
      r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(nan));
      const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 2 * j), _mm256_castsi256_si128(packed));
      break;
    }
    case DType::F16: {
      const __m256 c = _mm256_blendv_ps(acc, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000)), nan);
      const __m128i h = _mm256_cvtps_ph(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 2 * j), h);
      break;
    }
    default: {
      const __m256 c = _mm256_blendv_ps(acc, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000)), nan);
      _mm256_storeu_ps(reinterpret_cast<float*>(p + 4 * j), c);
      break;
    }
  }
}

}  // namespace

PMA_AVX2 void merge_avx2(const MergeArgs& a) {
  if (a.acc_f64 || a.in == DType::F64 || a.out == DType::F64) return merge_scalar(a);
  const size_t n8 = a.count & ~size_t(7);
  size_t j = 0;
  // Four independent accumulators per step hide the fma latency when there are few inputs.
  for (; j + 32 <= n8; j += 32) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int k = 0; k < a.n; ++k) {
      const __m256 w = _mm256_set1_ps(a.w32[k]);
      const uint8_t* s = a.src[k];
      acc0 = _mm256_fmadd_ps(w, load8(s, a.in, j), acc0);
      acc1 = _mm256_fmadd_ps(w, load8(s, a.in, j + 8), acc1);
      acc2 = _mm256_fmadd_ps(w, load8(s, a.in, j + 16), acc2);
      acc3 = _mm256_fmadd_ps(w, load8(s, a.in, j + 24), acc3);
    }
    store8(a.dst, a.out, j, acc0);
    store8(a.dst, a.out, j + 8, acc1);
    store8(a.dst, a.out, j + 16, acc2);
    store8(a.dst, a.out, j + 24, acc3);
  }
  for (; j < n8; j += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int k = 0; k < a.n; ++k) acc = _mm256_fmadd_ps(_mm256_set1_ps(a.w32[k]), load8(a.src[k], a.in, j), acc);
    store8(a.dst, a.out, j, acc);
  }
  if (j < a.count) {
    // No allocation for the usual number of inputs: this runs under the SIGBUS guard of mapped
    // reads, which abandons the frame (and anything it owns) at a faulting load.
    const uint8_t* small[64];
    std::vector<const uint8_t*> big(a.n > 64 ? size_t(a.n) : 0);
    merge_scalar(advance(a, j, a.count - j, a.n > 64 ? big.data() : small));
  }
}

}  // namespace pma

#else
namespace pma {
void merge_avx2(const MergeArgs& a) { merge_scalar(a); }
}  // namespace pma
#endif
