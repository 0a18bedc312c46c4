// BLAKE3, 16 chunks at once in the lanes of AVX-512 registers (kernels/blake3_lanes.h).
#include <cstring>

#include "kernels/blake3_core.h"

#if defined(__x86_64__) || defined(_M_X64)
// GCC 12 warns inside its own rotate and shuffle intrinsics (their undefined pass-through
// operand) once they are inlined here; nothing of ours is uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#define PMA_LANES_TARGET __attribute__((target("avx512f,avx512vl,avx2")))

namespace {

struct V {
  static constexpr size_t N = 16;
  __m512i x;
  PMA_LANES_TARGET static V splat(uint32_t w) { return {_mm512_set1_epi32(int(w))}; }
  PMA_LANES_TARGET static V load(const uint32_t* p) { return {_mm512_loadu_si512(p)}; }
  // m[w], lane l: word w of the 64-byte block at p + l * stride. Sixteen loads and a 16x16
  // transposition of 32-bit words (faster than sixteen gathers).
  PMA_LANES_TARGET static void block(const uint8_t* p, size_t stride, V* m) {
    __m512i r[16], t[16];
    for (int l = 0; l < 16; ++l) r[l] = _mm512_loadu_si512(p + l * stride);
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // r[4 * g + j], 128-bit lane k: word 4k + j of rows 4g to 4g + 3.
    for (int g = 0; g < 4; ++g) {
      r[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
      r[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
      r[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
      r[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    // A 4x4 transposition of 128-bit lanes for each j.
    for (int j = 0; j < 4; ++j) {
      const __m512i a = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x44), b = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xEE);
      const __m512i c = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x44);
      const __m512i d = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xEE);
      m[j].x = _mm512_shuffle_i32x4(a, c, 0x88);
      m[4 + j].x = _mm512_shuffle_i32x4(a, c, 0xDD);
      m[8 + j].x = _mm512_shuffle_i32x4(b, d, 0x88);
      m[12 + j].x = _mm512_shuffle_i32x4(b, d, 0xDD);
    }
  }
  PMA_LANES_TARGET static void store(V a, uint32_t* out) { _mm512_storeu_si512(out, a.x); }
};

PMA_LANES_TARGET inline V add(V a, V b) { return {_mm512_add_epi32(a.x, b.x)}; }
PMA_LANES_TARGET inline V xor_(V a, V b) { return {_mm512_xor_si512(a.x, b.x)}; }
PMA_LANES_TARGET inline V ror16(V a) { return {_mm512_ror_epi32(a.x, 16)}; }
PMA_LANES_TARGET inline V ror12(V a) { return {_mm512_ror_epi32(a.x, 12)}; }
PMA_LANES_TARGET inline V ror8(V a) { return {_mm512_ror_epi32(a.x, 8)}; }
PMA_LANES_TARGET inline V ror7(V a) { return {_mm512_ror_epi32(a.x, 7)}; }

}  // namespace

#define PMA_LANES_NAME(f) f##_avx512
#include "kernels/blake3_lanes.h"

#else
namespace pma {
namespace blake3 {
void chunks_avx512(const uint8_t*, size_t, uint64_t, uint32_t*) {}
void parents_avx512(const uint32_t*, size_t, uint32_t*) {}
}  // namespace blake3
}  // namespace pma
#endif
