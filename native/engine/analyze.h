// The sums behind `pma analyze`: how a tensor's checkpoints deviate from each other. Everything
// is taken relative to the oldest checkpoint, e_k = x_k - x_0, in float64: the sums then hold
// quantities the size of the deviations themselves, so nothing is lost to cancellation when the
// norms, cosines and distances are derived from them (src/analyze/moments.ts).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/chunk.h"

namespace pma {

struct OpMoments {
  // sum_j e_k[j] * e_l[j] for 1 <= k <= l < n, row by row (the upper triangle).
  std::vector<double> gram;
  // sum_j x_(n-1)[j] * e_k[j] for 1 <= k < n: the newest checkpoint against each deviation.
  std::vector<double> cross;
  // sum_j x_(n-1)[j]^2.
  double newest_sq = 0;
  uint64_t count = 0;
};

// Buffers of one JS environment (one worker thread), reused from op to op and chunk to chunk:
// fresh buffers for every chunk would be fresh pages, each a page fault on first touch (15-18 us
// on a VM that traps page-table updates). Grown on demand, never shrunk.
struct AnalyzeScratch {
  std::vector<uint8_t> raw;                // an FP8 block, as read
  std::vector<std::vector<float>> f32;     // an FP8 block, dequantised, per checkpoint
  std::vector<std::vector<float>> scales;  // an FP8 band's scales, per checkpoint
  std::vector<std::vector<uint8_t>> span;  // the other dtypes' blocks, per checkpoint
  std::vector<const uint8_t*> at;          // where each checkpoint's block starts
  // A sub-block as float64: the oldest checkpoint, then the vectors whose products are summed
  // (the newest, then e_1 .. e_(n-1)), and those sums: 8 lanes and a tail per pair (moments.h).
  std::vector<double> x0;
  std::vector<std::vector<double>> v;
  std::vector<const double*> vp;
  std::vector<double> lanes, tail;
};

// One OpMoments per op of the chunk (copies get an empty one). Reads like the merge, writes nothing;
// `kernel` sums the products (kernels/moments.h: every kernel gives the same bits).
// The number of checkpoints is taken from the merge ops' inputs: every merge op must have the same
// number, at least 2, and every copy exactly one (an E_INTERNAL error naming the tensor otherwise).
std::vector<OpMoments> analyze_chunk(const ChunkReads& chunk, Kernel kernel, AnalyzeScratch& scratch);

}  // namespace pma
