// BLAKE3 (the default hash mode, 32-byte digest), written from its specification: pma's default
// checksum of the output files. SHA-256 hashes one file at about 1.8 GB/s on one core with SHA-NI,
// slower than the disks it would keep up with; BLAKE3's tree lets one core hash 8 or 16 of its
// 1 KiB chunks at once in SIMD lanes, so a file is hashed several times faster with the same
// digest that `b3sum` prints.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/kernels.h"

namespace pma {

// A running BLAKE3 hash. update() in any pieces gives the digest of their concatenation.
class Blake3 {
 public:
  // Whole chunks go through the SIMD path of `kernel` (avx512: 16 lanes, avx2: 8, scalar: one
  // at a time), which the CPU must have (kernel_available); every path gives the same digest.
  explicit Blake3(Kernel kernel = best_kernel());
  void update(const uint8_t* p, size_t n);
  // The 32-byte digest in lowercase hex; the state is left as it was.
  std::string hex() const;

 private:
  void finish_chunk();
  void push_cv(const uint32_t* cv, uint64_t units);

  Kernel kernel_;
  uint32_t chunk_cv_[8];
  uint64_t chunk_counter_ = 0;  // index of the chunk being filled
  uint8_t block_[64];
  size_t block_len_ = 0;
  size_t blocks_done_ = 0;  // full blocks of the current chunk compressed
  // Chaining values of complete subtrees, largest first (at most one per bit of the chunk count).
  uint32_t stack_[54][8];
  size_t stack_len_ = 0;
  // Fewer whole chunks than SIMD lanes are copied here to fill a group.
  uint8_t lanes_[16 * 1024] = {};
};

}  // namespace pma
