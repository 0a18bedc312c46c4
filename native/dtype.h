// Element types the engine computes with. Everything else (integers, bool, fp8, ...) is copied
// byte for byte, so the engine only needs to know the float formats it averages.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/hd.h"

namespace pma {

enum class DType : uint8_t { BF16 = 0, F16 = 1, F32 = 2, F64 = 3 };

PMA_HD size_t dtype_size(DType d) {
  switch (d) {
    case DType::BF16:
    case DType::F16: return 2;
    case DType::F32: return 4;
    case DType::F64: return 8;
  }
  return 0;
}

}  // namespace pma
