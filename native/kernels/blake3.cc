#include "kernels/blake3.h"

#include <algorithm>
#include <cstring>

#include "kernels/blake3_core.h"
#include "kernels/kernels.h"

namespace pma {
namespace {

using namespace blake3;

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

// The specification's quarter-round, as in blake3_lanes.h for the SIMD lanes: GCC's target
// attributes do not reach into a template shared by both.
inline void g(uint32_t* v, int a, int b, int c, int d, uint32_t x, uint32_t y) {
  v[a] = v[a] + v[b] + x;
  v[d] = rotr(v[d] ^ v[a], 16);
  v[c] = v[c] + v[d];
  v[b] = rotr(v[b] ^ v[c], 12);
  v[a] = v[a] + v[b] + y;
  v[d] = rotr(v[d] ^ v[a], 8);
  v[c] = v[c] + v[d];
  v[b] = rotr(v[b] ^ v[c], 7);
}

// The compression function; `out` gets the first 8 words of its output (a chaining value, or
// the first 32 bytes of a root's output).
void compress(const uint32_t cv[8], const uint8_t block[kBlock], uint64_t counter, uint32_t len, uint32_t flags,
              uint32_t out[8]) {
  uint32_t m[16];
  for (int i = 0; i < 16; ++i) m[i] = load_le32(block + 4 * i);
  uint32_t v[16] = {cv[0],
                    cv[1],
                    cv[2],
                    cv[3],
                    cv[4],
                    cv[5],
                    cv[6],
                    cv[7],
                    kIv[0],
                    kIv[1],
                    kIv[2],
                    kIv[3],
                    uint32_t(counter),
                    uint32_t(counter >> 32),
                    len,
                    flags};
  for (const uint8_t* s : kSchedule) PMA_BLAKE3_ROUND(g, v, m, s);
  for (int i = 0; i < 8; ++i) out[i] = v[i] ^ v[i + 8];
}

void parent_cv(const uint32_t left[8], const uint32_t right[8], uint32_t flags, uint32_t out[8]) {
  uint8_t block[kBlock];
  for (int i = 0; i < 8; ++i) {
    for (int b = 0; b < 4; ++b) {
      block[4 * i + b] = uint8_t(left[i] >> (8 * b));
      block[32 + 4 * i + b] = uint8_t(right[i] >> (8 * b));
    }
  }
  compress(kIv, block, 0, kBlock, kParent | flags, out);
}

void chunks_scalar(const uint8_t* in, size_t count, uint64_t first, uint32_t* cvs) {
  for (size_t c = 0; c < count; ++c, in += kChunk, cvs += 8) {
    std::memcpy(cvs, kIv, sizeof kIv);
    for (size_t b = 0; b < kChunk / kBlock; ++b) {
      const uint32_t flags = (b == 0 ? kChunkStart : 0) | (b == kChunk / kBlock - 1 ? kChunkEnd : 0);
      compress(cvs, in + b * kBlock, first + c, kBlock, flags, cvs);
    }
  }
}

void parents_scalar(const uint32_t* pairs, size_t count, uint32_t* out) {
  for (size_t i = 0; i < count; ++i) parent_cv(pairs + 16 * i, pairs + 16 * i + 8, 0, out + 8 * i);
}

struct Path {
  ChunksFn chunks;
  ParentsFn parents;
  size_t lanes;
};

// The SIMD paths need what the merge kernels of the same name need, and no more.
const Path& path(Kernel k) {
  static const Path avx512 = {chunks_avx512, parents_avx512, 16};
  static const Path avx2 = {chunks_avx2, parents_avx2, 8};
  static const Path scalar = {chunks_scalar, parents_scalar, 1};
  switch (k) {
    case Kernel::Avx512: return avx512;
    case Kernel::Avx2: return avx2;
    case Kernel::Scalar: break;
  }
  return scalar;
}

// Chunks hashed as one subtree at most: its chaining values fit on the stack (8 KiB).
constexpr size_t kMaxSubtree = 256;

}  // namespace

Blake3::Blake3(Kernel kernel) : kernel_(kernel) { std::memcpy(chunk_cv_, kIv, sizeof kIv); }

void Blake3::push_cv(const uint32_t* cv, uint64_t units) {
  // `units` complete subtrees of this one's size so far, this one included: each trailing zero
  // bit of the count is a larger subtree just completed, merged with its left sibling.
  uint32_t merged[8];
  std::memcpy(merged, cv, sizeof merged);
  for (; (units & 1) == 0; units >>= 1) parent_cv(stack_[--stack_len_], merged, 0, merged);
  std::memcpy(stack_[stack_len_++], merged, sizeof merged);
}

void Blake3::finish_chunk() {
  uint32_t cv[8];
  std::memset(block_ + block_len_, 0, kBlock - block_len_);
  compress(chunk_cv_, block_, chunk_counter_, uint32_t(block_len_), (blocks_done_ == 0 ? kChunkStart : 0) | kChunkEnd,
           cv);
  push_cv(cv, ++chunk_counter_);
  std::memcpy(chunk_cv_, kIv, sizeof kIv);
  block_len_ = 0;
  blocks_done_ = 0;
}

void Blake3::update(const uint8_t* p, size_t n) {
  const Path& simd = path(kernel_);
  uint32_t cvs[kMaxSubtree * 8];
  while (n > 0) {
    // A chunk is closed only once more input follows it: the last one is the root's, or its sibling.
    if (blocks_done_ * kBlock + block_len_ == kChunk) finish_chunk();
    if (blocks_done_ == 0 && block_len_ == 0 && n > kChunk) {
      // Whole chunks in SIMD lanes, leaving a byte over: the largest subtree that the chunk count
      // allows (a power of two that divides it), its parents in lanes too; or, where that is
      // smaller than the lanes, a group of lanes whose chunks go on the stack one by one.
      const size_t whole = (n - 1) / kChunk;
      size_t size = kMaxSubtree;
      while (size > 1 && (size > whole || chunk_counter_ % size != 0)) size /= 2;
      if (size >= simd.lanes) {
        simd.chunks(p, size, chunk_counter_, cvs);
        for (size_t c = size; c > 1; c /= 2) (c / 2 >= simd.lanes ? simd.parents : parents_scalar)(cvs, c / 2, cvs);
        chunk_counter_ += size;
        push_cv(cvs, chunk_counter_ / size);
      } else {
        size = std::min(whole, simd.lanes);
        if (size < simd.lanes) {
          // Fewer chunks than lanes: the spare lanes hash a copy, and their results are not used.
          std::memcpy(lanes_, p, size * kChunk);
          simd.chunks(lanes_, simd.lanes, chunk_counter_, cvs);
        } else {
          simd.chunks(p, size, chunk_counter_, cvs);
        }
        for (size_t c = 0; c < size; ++c) push_cv(cvs + 8 * c, ++chunk_counter_);
      }
      p += size * kChunk;
      n -= size * kChunk;
      continue;
    }
    if (block_len_ == kBlock) {
      compress(chunk_cv_, block_, chunk_counter_, kBlock, blocks_done_ == 0 ? kChunkStart : 0, chunk_cv_);
      ++blocks_done_;
      block_len_ = 0;
    }
    const size_t take = std::min(n, kBlock - block_len_);
    std::memcpy(block_ + block_len_, p, take);
    block_len_ += take;
    p += take;
    n -= take;
  }
}

std::string Blake3::hex() const {
  // The last chunk's output, folded into each subtree on the stack from the smallest; the
  // outermost compression carries the root flag.
  uint8_t block[kBlock];
  std::memset(block, 0, sizeof block);
  std::memcpy(block, block_, block_len_);
  uint32_t out[8];
  const uint32_t chunk_flags = (blocks_done_ == 0 ? kChunkStart : 0) | kChunkEnd;
  if (stack_len_ == 0) {
    compress(chunk_cv_, block, 0, uint32_t(block_len_), chunk_flags | kRoot, out);
  } else {
    compress(chunk_cv_, block, chunk_counter_, uint32_t(block_len_), chunk_flags, out);
    for (size_t i = stack_len_; i-- > 0;) parent_cv(stack_[i], out, i == 0 ? kRoot : 0, out);
  }
  static const char digits[] = "0123456789abcdef";
  std::string hex(64, '0');
  for (int i = 0; i < 32; ++i) {
    const uint8_t b = uint8_t(out[i / 4] >> (8 * (i % 4)));
    hex[2 * i] = digits[b >> 4];
    hex[2 * i + 1] = digits[b & 15];
  }
  return hex;
}

}  // namespace pma
