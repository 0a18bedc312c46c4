#include "kernels/crc32.h"

#include <immintrin.h>

namespace pma {
namespace {

constexpr uint32_t kPoly = 0xEDB88320u;

struct Table {
  uint32_t t[256];
  constexpr Table() : t() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
      t[i] = c;
    }
  }
};
constexpr Table kTable;

// On the inverted register (as the folding code keeps it), one byte at a time.
uint32_t bytewise(uint32_t c, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) c = kTable.t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c;
}

// Folding constants for the reflected polynomial: x^(4*128+32) and x^(4*128-32) mod P (four
// lanes of 128 bits), x^(128+32) and x^(128-32) mod P (one lane), x^64 mod P, then P and the
// Barrett constant floor(x^64 / P), all bit-reflected (Intel, "Fast CRC Computation for Generic
// Polynomials Using PCLMULQDQ", 2009).
alignas(16) constexpr uint64_t kK1K2[2] = {0x0154442bd4, 0x01c6e41596};
alignas(16) constexpr uint64_t kK3K4[2] = {0x01751997d0, 0x00ccaa009e};
alignas(16) constexpr uint64_t kK5[2] = {0x0163cd6124, 0};
alignas(16) constexpr uint64_t kPolyMu[2] = {0x01db710641, 0x01f7011641};

#define PMA_CLMUL __attribute__((target("pclmul,sse4.1")))

PMA_CLMUL inline __m128i load(const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); }

// One fold: the 128 bits of `x` carried 128 (or 512) bits on by `k`, onto the next 128.
PMA_CLMUL inline __m128i step(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next);
}

// `n` a multiple of 16, at least 64; `c` the inverted register. Returns the inverted register.
PMA_CLMUL uint32_t fold(uint32_t c, const uint8_t* p, size_t n) {
  __m128i x1 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(int(c)));
  __m128i x2 = load(p + 16), x3 = load(p + 32), x4 = load(p + 48);
  p += 64;
  n -= 64;
  __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(kK1K2));
  for (; n >= 64; p += 64, n -= 64) {
    x1 = step(x1, k, load(p));
    x2 = step(x2, k, load(p + 16));
    x3 = step(x3, k, load(p + 32));
    x4 = step(x4, k, load(p + 48));
  }
  k = _mm_load_si128(reinterpret_cast<const __m128i*>(kK3K4));
  x1 = step(x1, k, x2);
  x1 = step(x1, k, x3);
  x1 = step(x1, k, x4);
  for (; n >= 16; p += 16, n -= 16) x1 = step(x1, k, load(p));
  // 128 bits to 64, then Barrett reduction to 32.
  const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);
  __m128i x2b = _mm_clmulepi64_si128(x1, k, 0x10);
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2b);
  const __m128i k5 = _mm_load_si128(reinterpret_cast<const __m128i*>(kK5));
  x2b = _mm_srli_si128(x1, 4);
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5, 0x00), x2b);
  const __m128i pm = _mm_load_si128(reinterpret_cast<const __m128i*>(kPolyMu));
  x2b = _mm_and_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, low32), pm, 0x10), low32);
  x1 = _mm_xor_si128(x1, _mm_clmulepi64_si128(x2b, pm, 0x00));
  return uint32_t(_mm_extract_epi32(x1, 1));
}

}  // namespace

bool crc32_folds() {
  static const bool folds =
      (__builtin_cpu_init(), __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1"));
  return folds;
}

uint32_t crc32(uint32_t crc, const uint8_t* p, size_t n) {
  uint32_t c = ~crc;
  if (n >= 64 && crc32_folds()) {
    const size_t m = n & ~size_t(15);
    c = fold(c, p, m);
    p += m;
    n -= m;
  }
  return ~bytewise(c, p, n);
}

}  // namespace pma
