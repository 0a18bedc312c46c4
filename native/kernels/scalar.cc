#include <cmath>
#include <cstring>

#include "kernels/convert.h"
#include "kernels/kernels.h"

namespace pma {
namespace {

inline float load_f32(const uint8_t* p, DType t, size_t j) {
  switch (t) {
    case DType::BF16: { uint16_t h; std::memcpy(&h, p + 2 * j, 2); return bf16_to_f32(h); }
    case DType::F16: { uint16_t h; std::memcpy(&h, p + 2 * j, 2); return f16_to_f32(h); }
    case DType::F32: { float f; std::memcpy(&f, p + 4 * j, 4); return f; }
    case DType::F64: { double d; std::memcpy(&d, p + 8 * j, 8); return float(d); }
  }
  return 0.0f;
}

inline double load_f64(const uint8_t* p, DType t, size_t j) {
  if (t == DType::F64) { double d; std::memcpy(&d, p + 8 * j, 8); return d; }
  return double(load_f32(p, t, j));
}

inline void store_f32(uint8_t* p, DType t, size_t j, float v) {
  switch (t) {
    case DType::BF16: { uint16_t h = f32_to_bf16(v); std::memcpy(p + 2 * j, &h, 2); break; }
    case DType::F16: { uint16_t h = f32_to_f16(v); std::memcpy(p + 2 * j, &h, 2); break; }
    case DType::F32: { uint32_t u = f32_out(v); std::memcpy(p + 4 * j, &u, 4); break; }
    case DType::F64: {
      const uint64_t u = std::isnan(v) ? kF64Nan : f64_bits(double(v));
      std::memcpy(p + 8 * j, &u, 8);
      break;
    }
  }
}

inline void store_f64(uint8_t* p, DType t, size_t j, double v) {
  switch (t) {
    case DType::F64: {
      const uint64_t u = std::isnan(v) ? kF64Nan : f64_bits(v);
      std::memcpy(p + 8 * j, &u, 8);
      break;
    }
    case DType::F32: store_f32(p, t, j, float(v)); break;  // one RNE rounding
    default: store_f32(p, t, j, f64_to_f32_odd(v)); break;  // odd, then RNE: no double rounding
  }
}

}  // namespace

void merge_scalar(const MergeArgs& a) {
  if (a.acc_f64) {
    for (size_t j = 0; j < a.count; ++j) {
      double acc = 0.0;
      for (int k = 0; k < a.n; ++k) acc = std::fma(a.w64[k], load_f64(a.src[k], a.in, j), acc);
      store_f64(a.dst, a.out, j, acc);
    }
    return;
  }
  for (size_t j = 0; j < a.count; ++j) {
    float acc = 0.0f;
    for (int k = 0; k < a.n; ++k) acc = std::fmaf(a.w32[k], load_f32(a.src[k], a.in, j), acc);
    store_f32(a.dst, a.out, j, acc);
  }
}

MergeArgs advance(const MergeArgs& a, size_t first, size_t count, const uint8_t** scratch) {
  const size_t is = dtype_size(a.in);
  for (int k = 0; k < a.n; ++k) scratch[k] = a.src[k] + first * is;
  MergeArgs b = a;
  b.src = scratch;
  b.count = count;
  b.dst = a.dst + first * dtype_size(a.out);
  return b;
}

}  // namespace pma
