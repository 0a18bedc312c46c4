// The merge kernels: out[j] = round(sum_k w[k] * x_k[j]) accumulated oldest to newest with one
// fma per input. All inputs share one dtype (the planner checks it). No napi.h here, on purpose:
// the kernels are plain C++ so the CUDA build and the native tests can use them as they are.
#pragma once
#include <cstddef>
#include <cstdint>

#include "dtype.h"

namespace pma {

struct MergeArgs {
  const uint8_t* const* src;  // n input pointers, each `count` elements of `in`
  int n;
  const float* w32;   // f32 accumulation weights (golden contract)
  const double* w64;  // f64 accumulation weights (--accumulate f64)
  bool acc_f64;
  DType in;
  DType out;
  size_t count;
  uint8_t* dst;  // `count` elements of `out`
};

enum class Kernel : uint8_t { Scalar = 0, Avx2 = 1, Avx512 = 2 };

void merge_scalar(const MergeArgs& a);
void merge_avx2(const MergeArgs& a);
void merge_avx512(const MergeArgs& a);

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
};

CpuFeatures cpu_features();
bool kernel_available(Kernel k);
Kernel best_kernel();
const char* kernel_name(Kernel k);
// Runs the kernel `k`; paths it does not vectorise (f64, f64 accumulation) fall back to scalar.
void merge(Kernel k, const MergeArgs& a);

// Offsets every input and the output by `first` elements (for tails and blocks).
MergeArgs advance(const MergeArgs& a, size_t first, size_t count, const uint8_t** scratch);

}  // namespace pma
