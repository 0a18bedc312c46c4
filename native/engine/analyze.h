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

// One OpMoments per op of the chunk (copies get an empty one). Reads like the merge, writes nothing;
// `kernel` sums the products (kernels/moments.h: every kernel gives the same bits).
// The number of checkpoints is taken from the merge ops' inputs: every merge op must have the same
// number, at least 2, and every copy exactly one (an E_INTERNAL error naming the tensor otherwise).
std::vector<OpMoments> analyze_chunk(const ChunkReads& chunk, Kernel kernel);

}  // namespace pma
