// What every BLAKE3 path shares (kernels/blake3.cc, and the SIMD paths that include
// blake3_lanes.h): the constants of the specification, the word order of each round and the
// round itself.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pma {
namespace blake3 {

inline constexpr size_t kBlock = 64;
inline constexpr size_t kChunk = 1024;

inline constexpr uint32_t kChunkStart = 1;
inline constexpr uint32_t kChunkEnd = 2;
inline constexpr uint32_t kParent = 4;
inline constexpr uint32_t kRoot = 8;

// The initial chaining value (SHA-256's), the key of the default hash mode.
inline constexpr uint32_t kIv[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                                    0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};

// Message word order of each of the 7 rounds: the identity, then the specification's permutation
// (2 6 3 10 7 0 4 13 1 11 12 5 9 14 15 8) applied once more per round.
inline constexpr uint8_t kSchedule[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1}, {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4}, {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

// One round of the compression: the quarter-round g on the columns, then on the diagonals, of the
// state v, with the message words m in the round's order s (a row of kSchedule). A macro, so that
// the scalar path and each SIMD path use it with their own g, each compiled for its own target
// (GCC does not inline across target attributes, so a shared template would not do).
#define PMA_BLAKE3_ROUND(g, v, m, s)        \
  do {                                      \
    g(v, 0, 4, 8, 12, m[s[0]], m[s[1]]);    \
    g(v, 1, 5, 9, 13, m[s[2]], m[s[3]]);    \
    g(v, 2, 6, 10, 14, m[s[4]], m[s[5]]);   \
    g(v, 3, 7, 11, 15, m[s[6]], m[s[7]]);   \
    g(v, 0, 5, 10, 15, m[s[8]], m[s[9]]);   \
    g(v, 1, 6, 11, 12, m[s[10]], m[s[11]]); \
    g(v, 2, 7, 8, 13, m[s[12]], m[s[13]]);  \
    g(v, 3, 4, 9, 14, m[s[14]], m[s[15]]);  \
  } while (0)

inline uint32_t load_le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Hashes `count` whole chunks at `in` (chunk counters first, first + 1, ...) and writes their
// chaining values, 8 words each, to `cvs`. count is a multiple of the path's lane count.
using ChunksFn = void (*)(const uint8_t* in, size_t count, uint64_t first, uint32_t* cvs);
// Compresses `count` parent nodes: node i's block is the chaining values pairs[16i .. 16i + 16),
// its chaining value goes to out[8i .. 8i + 8). out may be pairs (node i is written after nodes
// up to i are read). count is a multiple of the path's lane count.
using ParentsFn = void (*)(const uint32_t* pairs, size_t count, uint32_t* out);

void chunks_avx512(const uint8_t* in, size_t count, uint64_t first, uint32_t* cvs);
void parents_avx512(const uint32_t* pairs, size_t count, uint32_t* out);
void chunks_avx2(const uint8_t* in, size_t count, uint64_t first, uint32_t* cvs);
void parents_avx2(const uint32_t* pairs, size_t count, uint32_t* out);

}  // namespace blake3
}  // namespace pma
