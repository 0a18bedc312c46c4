// Where the engine's time goes, for the merge's breakdown (`pma merge --json`, `pma bench
// --breakdown`): steady-clock nanoseconds added up by a scope guard around each stage. A clock
// read is a vDSO call of tens of nanoseconds, against a block of tens of microseconds, so the
// timers stay on.
#pragma once
#include <chrono>
#include <cstdint>

namespace pma {

inline uint64_t now_ns() {
  return uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// Adds the time from its construction to its destruction to `total`.
class Timed {
 public:
  explicit Timed(uint64_t& total) : total_(total), start_(now_ns()) {}
  ~Timed() { total_ += now_ns() - start_; }
  Timed(const Timed&) = delete;
  Timed& operator=(const Timed&) = delete;

 private:
  uint64_t& total_;
  uint64_t start_;
};

}  // namespace pma
