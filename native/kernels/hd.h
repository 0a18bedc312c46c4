// Lets one definition of the element arithmetic serve the CPU kernels (g++) and the CUDA kernels
// (nvcc): the bytes every backend writes then come from the same lines of code.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define PMA_HD __host__ __device__ __forceinline__
#else
#define PMA_HD inline
#endif

namespace pma {

// Loads and stores of unaligned host bytes go through memcpy; device buffers are always aligned
// to the element size, and memcpy is not a device function.
template <typename T>
PMA_HD T load_as(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const T*>(p);
#else
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
#endif
}

template <typename T>
PMA_HD void store_as(uint8_t* p, T v) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<T*>(p) = v;
#else
  std::memcpy(p, &v, sizeof(T));
#endif
}

// The bits of a value as another type of the same size; __builtin_memcpy of registers compiles
// to a move on both sides (std::memcpy is not a device function).
template <typename To, typename From>
PMA_HD To bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs types of one size");
  To t;
  __builtin_memcpy(&t, &v, sizeof(To));
  return t;
}

PMA_HD uint32_t f32_bits(float f) { return bit_cast<uint32_t>(f); }
PMA_HD float bits_f32(uint32_t u) { return bit_cast<float>(u); }
PMA_HD uint64_t f64_bits(double d) { return bit_cast<uint64_t>(d); }
PMA_HD double bits_f64(uint64_t u) { return bit_cast<double>(u); }

// Single-rounding fused multiply-add on both sides (the golden contract's one fma per input).
PMA_HD float fma32(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return __builtin_fmaf(a, b, c);
#endif
}

PMA_HD double fma64(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return __builtin_fma(a, b, c);
#endif
}

}  // namespace pma
