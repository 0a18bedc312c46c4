// The body of a SIMD BLAKE3 path: N chunks hashed at once, one per lane, in the order of the
// scalar compression (kernels/blake3.cc). Included by one file per instruction set, after it
// defines PMA_LANES_TARGET and a vector type V with N lanes of uint32_t:
//   V::N; V::splat(x); V::load(words); V::block(p, stride, m): m[w], lane l = word w at p + l * stride;
//   add(a, b), xor_(a, b), ror16/12/8/7(a); V::store(a, uint32_t* out) (N words);
// and PMA_LANES_NAME(f), the name of its entry points (chunks_avx2, ...: blake3_core.h).
// Not a template: GCC does not inline across target attributes, so each file compiles its own.
#pragma once
#include <cstring>

namespace {

using namespace pma::blake3;

PMA_LANES_TARGET inline void g(V* v, int a, int b, int c, int d, V x, V y) {
  v[a] = add(add(v[a], v[b]), x);
  v[d] = ror16(xor_(v[d], v[a]));
  v[c] = add(v[c], v[d]);
  v[b] = ror12(xor_(v[b], v[c]));
  v[a] = add(add(v[a], v[b]), y);
  v[d] = ror8(xor_(v[d], v[a]));
  v[c] = add(v[c], v[d]);
  v[b] = ror7(xor_(v[b], v[c]));
}

// V::N inputs of `blocks` 64-byte blocks each, input l at in + l * stride, compressed in turn
// from the key: their chaining values to cvs (8 words each). Counters first + l (count_up) or
// first; flags on every block, start on the first, end on the last.
PMA_LANES_TARGET void hash_lanes(const uint8_t* in, size_t stride, size_t blocks, uint64_t first, bool count_up,
                                 uint32_t flags, uint32_t start, uint32_t end, uint32_t* cvs) {
  uint32_t lo[V::N], hi[V::N];
  for (size_t l = 0; l < V::N; ++l) {
    const uint64_t c = first + (count_up ? l : 0);
    lo[l] = uint32_t(c);
    hi[l] = uint32_t(c >> 32);
  }
  const V counter_lo = V::load(lo), counter_hi = V::load(hi);
  V h[8];
  for (int i = 0; i < 8; ++i) h[i] = V::splat(kIv[i]);
  for (size_t b = 0; b < blocks; ++b) {
    V m[16];
    V::block(in + b * kBlock, stride, m);
    const uint32_t f = flags | (b == 0 ? start : 0) | (b + 1 == blocks ? end : 0);
    V v[16] = {h[0],
               h[1],
               h[2],
               h[3],
               h[4],
               h[5],
               h[6],
               h[7],
               V::splat(kIv[0]),
               V::splat(kIv[1]),
               V::splat(kIv[2]),
               V::splat(kIv[3]),
               counter_lo,
               counter_hi,
               V::splat(uint32_t(kBlock)),
               V::splat(f)};
#pragma GCC unroll 7
    for (const uint8_t* s : kSchedule) PMA_BLAKE3_ROUND(g, v, m, s);
    for (int i = 0; i < 8; ++i) h[i] = xor_(v[i], v[i + 8]);
  }
  uint32_t words[8][V::N];
  for (int i = 0; i < 8; ++i) V::store(h[i], words[i]);
  for (size_t l = 0; l < V::N; ++l) {
    for (int i = 0; i < 8; ++i) cvs[8 * l + i] = words[i][l];
  }
}

}  // namespace

namespace pma {
namespace blake3 {

void PMA_LANES_NAME(chunks)(const uint8_t* in, size_t count, uint64_t first, uint32_t* cvs) {
  for (size_t c = 0; c < count; c += V::N) {
    hash_lanes(in + c * kChunk, kChunk, kChunk / kBlock, first + c, true, 0, kChunkStart, kChunkEnd, cvs + 8 * c);
  }
}

void PMA_LANES_NAME(parents)(const uint32_t* pairs, size_t count, uint32_t* out) {
  uint32_t cvs[8 * V::N];
  for (size_t c = 0; c < count; c += V::N) {
    hash_lanes(reinterpret_cast<const uint8_t*>(pairs + 16 * c), kBlock, 1, 0, false, kParent, 0, 0, cvs);
    std::memcpy(out + 8 * c, cvs, sizeof cvs);
  }
}

}  // namespace blake3
}  // namespace pma
