#include "kernels/element.h"
#include "kernels/kernels.h"

namespace pma {

void merge_scalar(const MergeArgs& a) {
  if (a.acc_f64) {
    for (size_t j = 0; j < a.count; ++j) {
      double acc = 0.0;
      for (int k = 0; k < a.n; ++k) acc = fma64(a.w64[k], load_f64(a.src[k], a.in, j), acc);
      store_f64(a.dst, a.out, j, acc);
    }
    return;
  }
  for (size_t j = 0; j < a.count; ++j) {
    float acc = 0.0f;
    for (int k = 0; k < a.n; ++k) acc = fma32(a.w32[k], load_f32(a.src[k], a.in, j), acc);
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
