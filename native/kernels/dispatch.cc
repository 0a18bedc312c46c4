// Run-time choice of kernel: a SIMD path is used only when the CPU (and the OS, through XCR0,
// which __builtin_cpu_supports consults) supports every instruction it contains.
#include "kernels/kernels.h"

namespace pma {

CpuFeatures cpu_features() {
  CpuFeatures f;
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.f16c = __builtin_cpu_supports("f16c");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
#endif
  return f;
}

bool kernel_available(Kernel k) {
  static const CpuFeatures f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  switch (k) {
    case Kernel::Scalar: return true;
    case Kernel::Avx2: return avx2;
    case Kernel::Avx512: return avx2 && f.avx512f && f.avx512bw && f.avx512vl;
  }
  return false;
}

Kernel best_kernel() {
  if (kernel_available(Kernel::Avx512)) return Kernel::Avx512;
  if (kernel_available(Kernel::Avx2)) return Kernel::Avx2;
  return Kernel::Scalar;
}

const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::Scalar: return "scalar";
    case Kernel::Avx2: return "avx2";
    case Kernel::Avx512: return "avx512";
  }
  return "scalar";
}

void merge(Kernel k, const MergeArgs& a) {
  switch (k) {
    case Kernel::Avx512: merge_avx512(a); return;
    case Kernel::Avx2: merge_avx2(a); return;
    case Kernel::Scalar: merge_scalar(a); return;
  }
}

}  // namespace pma
