// The FP8 arithmetic of block-scaled checkpoints (docs/contract.md, "FP8"): decoding, the block
// scale of a requantised output and the saturating round-to-nearest-even encoder. Integer and
// power-of-two arithmetic only, so the CPU engine (every kernel) and the CUDA build compile the
// same lines and write the same bytes.
#pragma once
#include <cstdint>

#include "kernels/convert.h"
#include "kernels/hd.h"

// Always inlined on the host: called from loops compiled for AVX2 and AVX-512, where a call to
// the baseline copy of these few lines would stop the loop from vectorising.
#if defined(__CUDACC__)
#define PMA_FP8 PMA_HD
#else
#define PMA_FP8 inline __attribute__((always_inline))
#endif

namespace pma {

// The two FP8 formats of safetensors: F8_E4M3 (e4m3fn: no infinity, NaN S.1111.111, largest
// 448) and F8_E5M2 (IEEE-like: infinity and NaNs, largest 57344).
enum class Fp8 : uint8_t { E4M3 = 0, E5M2 = 1 };

// The canonical NaN pma writes in both formats (torch's too).
constexpr uint8_t kFp8Nan = 0x7F;

// Exact: every FP8 value is a float. The magnitude bits shifted into an f32's exponent and
// mantissa are the value times a power of two (a subnormal f32 for an FP8 subnormal, which the
// engine's no-DAZ environment keeps), so one exact multiplication rebiases both cases.
PMA_FP8 float fp8_to_f32(uint8_t q, Fp8 f) {
  const uint32_t sign = uint32_t(q & 0x80u) << 24;
  const uint32_t a = q & 0x7Fu;
  if (f == Fp8::E4M3) {
    if (a == 0x7Fu) return bits_f32(kF32Nan);
    return bits_f32(f32_bits(bits_f32(a << 20) * 0x1p120f) | sign);
  }
  if (a >= 0x7Cu) return bits_f32(a == 0x7Cu ? (0x7F800000u | sign) : kF32Nan);
  return bits_f32(f32_bits(bits_f32(a << 21) * 0x1p112f) | sign);
}

// f32 -> FP8, round to nearest even, saturating: a finite value beyond the largest becomes the
// largest. Infinity becomes the largest in E4M3 (which has none) and stays infinity in E5M2;
// NaN becomes kFp8Nan. Integer selects rather than branches, so that the CPU loops vectorise.
PMA_FP8 uint8_t f32_to_fp8(float x, Fp8 f) {
  const bool e4 = f == Fp8::E4M3;
  const uint32_t u = f32_bits(x);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7FFFFFFFu;
  // Normal: rebias the exponent (f32's 127 to the format's 7 or 15) and round the mantissa to 3
  // or 2 bits, ties to even.
  const uint32_t drop = e4 ? 20u : 21u;
  const uint32_t r = a - (e4 ? (120u << 23) : (112u << 23));
  const uint32_t normal = (r + ((1u << (drop - 1)) - 1u) + ((r >> drop) & 1u)) >> drop;
  // Below the smallest normal: the value in units of the smallest subnormal (2^-9 or 2^-16), RNE.
  // The shift is clamped so the lanes that take the normal result compute nothing undefined.
  const uint32_t e = a >> 23;
  const uint32_t m = (a & 0x7FFFFFu) | (e != 0 ? 0x800000u : 0u);
  const int wide = int(drop + (e4 ? 121u : 113u)) - int(e != 0 ? e : 1u);
  const uint32_t shift = uint32_t(wide < 1 ? 1 : (wide > 31 ? 31 : wide));
  const uint32_t kept = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  const uint32_t sub = kept + uint32_t(rem > half || (rem == half && (kept & 1u) != 0));
  // Bit masks rather than ?: on the codes: g++ narrows the codes to bytes and then cannot
  // vectorise a select between differently narrowed values.
  const uint32_t normal_range = 0u - uint32_t(a >= (e4 ? 0x3C800000u : 0x38800000u));  // 2^-6, 2^-14
  const uint32_t too_big = 0u - uint32_t(a >= (e4 ? 0x43E00000u : 0x47600000u));       // 448, 57344
  const uint32_t inf = 0u - uint32_t(!e4 && a == 0x7F800000u);
  const uint32_t nan = 0u - uint32_t(a > 0x7F800000u);
  uint32_t code = (normal & normal_range) | (sub & ~normal_range);
  code = ((e4 ? 0x7Eu : 0x7Bu) & too_big) | (code & ~too_big);
  code = (0x7Cu & inf) | (code & ~inf);
  return uint8_t((uint32_t(kFp8Nan) & nan) | ((sign | code) & ~nan));
}

// The largest finite value of a format: a requantised block's scale is amax / fp8_max.
PMA_FP8 float fp8_max(Fp8 f) { return f == Fp8::E4M3 ? 448.0f : 57344.0f; }

// Dequantised value: one f32 rounding of the exact FP8 value times its scale.
PMA_FP8 float fp8_dequantise(uint8_t q, Fp8 f, float scale) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(fp8_to_f32(q, f), scale);
#else
  return fp8_to_f32(q, f) * scale;
#endif
}

// The code of x in a block whose scale is s (as stored): x / s rounded to f32, then encoded. A
// zero scale (a block without a finite non-zero value) encodes x itself.
PMA_FP8 uint8_t fp8_quantise(float x, float s, Fp8 f) {
#if defined(__CUDA_ARCH__)
  return f32_to_fp8(s > 0.0f ? __fdiv_rn(x, s) : x, f);
#else
  return f32_to_fp8(s > 0.0f ? x / s : x, f);
#endif
}

}  // namespace pma
