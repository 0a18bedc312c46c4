// The golden contract needs round-to-nearest-even and no flush-to-zero. The thread's MXCSR is not
// ours to trust (a host process may have set FTZ/DAZ), so the engine sets it for the duration of a
// call and restores it after.
#pragma once
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace pma {

class FpEnvGuard {
 public:
#if defined(__x86_64__) || defined(_M_X64)
  FpEnvGuard() : saved_(_mm_getcsr()) { _mm_setcsr(0x1F80); }
  ~FpEnvGuard() { _mm_setcsr(saved_); }
  FpEnvGuard(const FpEnvGuard&) = delete;
  FpEnvGuard& operator=(const FpEnvGuard&) = delete;

 private:
  unsigned saved_;
#endif
};

}  // namespace pma
