// BLAKE3, 8 chunks at once in the lanes of AVX2 registers (kernels/blake3_lanes.h).
#include <cstring>

#include "kernels/blake3_core.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define PMA_LANES_TARGET __attribute__((target("avx2")))

namespace {

struct V {
  static constexpr size_t N = 8;
  __m256i x;
  PMA_LANES_TARGET static V splat(uint32_t w) { return {_mm256_set1_epi32(int(w))}; }
  PMA_LANES_TARGET static V load(const uint32_t* p) {
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))};
  }
  // m[w], lane l: word w of the 64-byte block at p + l * stride. Two 8x8 transpositions of
  // 32-bit words (faster than sixteen gathers).
  PMA_LANES_TARGET static void block(const uint8_t* p, size_t stride, V* m) {
    for (int half = 0; half < 2; ++half) {
      __m256i r[8], t[8];
      for (int l = 0; l < 8; ++l)
        r[l] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + l * stride + 32 * half));
      for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
      }
      // r[4 * g + j], 128-bit lane k: word 4k + j of rows 4g to 4g + 3.
      for (int g = 0; g < 2; ++g) {
        r[4 * g + 0] = _mm256_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        r[4 * g + 1] = _mm256_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        r[4 * g + 2] = _mm256_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        r[4 * g + 3] = _mm256_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
      }
      for (int j = 0; j < 4; ++j) {
        m[8 * half + j].x = _mm256_permute2x128_si256(r[j], r[4 + j], 0x20);
        m[8 * half + 4 + j].x = _mm256_permute2x128_si256(r[j], r[4 + j], 0x31);
      }
    }
  }
  PMA_LANES_TARGET static void store(V a, uint32_t* out) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), a.x); }
};

PMA_LANES_TARGET inline V add(V a, V b) { return {_mm256_add_epi32(a.x, b.x)}; }
PMA_LANES_TARGET inline V xor_(V a, V b) { return {_mm256_xor_si256(a.x, b.x)}; }
PMA_LANES_TARGET inline V rot_bytes(V a, int r) {
  // Rotating by whole bytes is one byte shuffle within each 32-bit word.
  const __m256i by16 = _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4, 5,
                                        10, 11, 8, 9, 14, 15, 12, 13);
  const __m256i by8 = _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1, 2, 3, 0, 5, 6, 7, 4, 9,
                                       10, 11, 8, 13, 14, 15, 12);
  return {_mm256_shuffle_epi8(a.x, r == 16 ? by16 : by8)};
}
PMA_LANES_TARGET inline V ror16(V a) { return rot_bytes(a, 16); }
PMA_LANES_TARGET inline V ror8(V a) { return rot_bytes(a, 8); }
PMA_LANES_TARGET inline V ror12(V a) {
  return {_mm256_or_si256(_mm256_srli_epi32(a.x, 12), _mm256_slli_epi32(a.x, 20))};
}
PMA_LANES_TARGET inline V ror7(V a) { return {_mm256_or_si256(_mm256_srli_epi32(a.x, 7), _mm256_slli_epi32(a.x, 25))}; }

}  // namespace

#define PMA_LANES_NAME(f) f##_avx2
#include "kernels/blake3_lanes.h"

#else
namespace pma {
namespace blake3 {
void chunks_avx2(const uint8_t*, size_t, uint64_t, uint32_t*) {}
void parents_avx2(const uint32_t*, size_t, uint32_t*) {}
}  // namespace blake3
}  // namespace pma
#endif
