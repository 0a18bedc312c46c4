// Exact scalar conversions between the float formats, written with integer arithmetic so they do
// not depend on the compiler, the rounding mode or the FPU's flush-to-zero settings. These are the
// reference every SIMD path must match bit for bit (golden contract: RNE, subnormals kept,
// overflow to infinity, canonical quiet NaN), and the CUDA kernels compile these same lines.
#pragma once
#include <cstdint>

#include "kernels/hd.h"

namespace pma {

constexpr uint16_t kBf16Nan = 0x7FC0;
constexpr uint16_t kF16Nan = 0x7E00;
constexpr uint32_t kF32Nan = 0x7FC00000u;
constexpr uint64_t kF64Nan = 0x7FF8000000000000ull;

PMA_HD float bf16_to_f32(uint16_t h) { return bits_f32(uint32_t(h) << 16); }

PMA_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    // Subnormal or zero: mant * 2^-24 is exact in f32 (a normal number there).
    const float mag = float(mant) * 0x1p-24f;
    return bits_f32(f32_bits(mag) | sign);
  }
  if (exp == 31) return bits_f32(sign | 0x7F800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

PMA_HD uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return kBf16Nan;
  return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

PMA_HD uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint32_t a = u & 0x7FFFFFFFu;
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  if (a > 0x7F800000u) return kF16Nan;
  if (a >= 0x477FF000u) return uint16_t(sign | 0x7C00u);  // >= 65520 rounds to infinity
  if (a >= 0x38800000u) {                                 // normal f16 range (>= 2^-14)
    const uint32_t r = a - 0x38000000u;                   // rebias exponent 127 -> 15
    return uint16_t(sign | ((r + 0xFFFu + ((r >> 13) & 1u)) >> 13));
  }
  const uint32_t e = a >> 23;
  if (e < 102) return sign;  // below 2^-25: rounds to zero (2^-25 itself ties to even zero)
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126 - e;  // 14 .. 24
  uint32_t r = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1u))) ++r;
  return uint16_t(sign | r);
}

// f32 result, written with the canonical NaN.
PMA_HD uint32_t f32_out(float f) {
  const uint32_t u = f32_bits(f);
  return (u & 0x7FFFFFFFu) > 0x7F800000u ? kF32Nan : u;
}

PMA_HD bool f64_is_nan(double d) { return (f64_bits(d) & 0x7FFFFFFFFFFFFFFFull) > 0x7FF0000000000000ull; }

// f64 result, written with the canonical NaN.
PMA_HD uint64_t f64_out(double d) { return f64_is_nan(d) ? kF64Nan : f64_bits(d); }

// double -> float rounded to odd: the sticky bit survives, so a second rounding to a narrower
// format (bf16, f16) gives the correctly rounded result of the double (no double rounding).
// Bit operations only, so host and device agree without a libm.
PMA_HD float f64_to_f32_odd(double d) {
  if (f64_is_nan(d)) return bits_f32(kF32Nan);
  const uint64_t da = f64_bits(d) & 0x7FFFFFFFFFFFFFFFull;
  float f = float(d);  // round to nearest even (the engine runs with the default rounding mode)
  if (da == 0x7FF0000000000000ull || double(f) == d) return f;
  // Rounded away from zero (or overflowed to infinity): one step back toward zero.
  if (double(bits_f32(f32_bits(f) & 0x7FFFFFFFu)) > bits_f64(da)) f = bits_f32(f32_bits(f) - 1u);
  return bits_f32(f32_bits(f) | 1u);
}

}  // namespace pma
