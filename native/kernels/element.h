// One element of the merge, for every dtype pair: load as f32/f64, store with the contract's
// rounding. The scalar kernel and the CUDA kernels both run these functions, so they cannot drift.
#pragma once
#include <cstddef>
#include <cstdint>

#include "dtype.h"
#include "kernels/convert.h"
#include "kernels/hd.h"

namespace pma {

PMA_HD float load_f32(const uint8_t* p, DType t, size_t j) {
  switch (t) {
    case DType::BF16: return bf16_to_f32(load_as<uint16_t>(p + 2 * j));
    case DType::F16: return f16_to_f32(load_as<uint16_t>(p + 2 * j));
    case DType::F32: return load_as<float>(p + 4 * j);
    case DType::F64: return float(load_as<double>(p + 8 * j));
  }
  return 0.0f;
}

PMA_HD double load_f64(const uint8_t* p, DType t, size_t j) {
  if (t == DType::F64) return load_as<double>(p + 8 * j);
  return double(load_f32(p, t, j));
}

PMA_HD void store_f32(uint8_t* p, DType t, size_t j, float v) {
  switch (t) {
    case DType::BF16: store_as<uint16_t>(p + 2 * j, f32_to_bf16(v)); break;
    case DType::F16: store_as<uint16_t>(p + 2 * j, f32_to_f16(v)); break;
    case DType::F32: store_as<uint32_t>(p + 4 * j, f32_out(v)); break;
    case DType::F64: store_as<uint64_t>(p + 8 * j, f64_out(double(v))); break;
  }
}

PMA_HD void store_f64(uint8_t* p, DType t, size_t j, double v) {
  switch (t) {
    case DType::F64: store_as<uint64_t>(p + 8 * j, f64_out(v)); break;
    case DType::F32: store_f32(p, t, j, float(v)); break;   // one RNE rounding
    default: store_f32(p, t, j, f64_to_f32_odd(v)); break;  // odd, then RNE: no double rounding
  }
}

// Element j of the merge: fma oldest to newest, then one rounding to the output dtype.
// `src` holds n inputs, input k starting at src + k * stride.
PMA_HD void merge_element(const uint8_t* src, size_t stride, int n, const float* w32, const double* w64, bool acc_f64,
                          DType in, DType out, uint8_t* dst, size_t j) {
  if (acc_f64) {
    double acc = 0.0;
    for (int k = 0; k < n; ++k) acc = fma64(w64[k], load_f64(src + size_t(k) * stride, in, j), acc);
    store_f64(dst, out, j, acc);
    return;
  }
  float acc = 0.0f;
  for (int k = 0; k < n; ++k) acc = fma32(w32[k], load_f32(src + size_t(k) * stride, in, j), acc);
  store_f32(dst, out, j, acc);
}

}  // namespace pma
