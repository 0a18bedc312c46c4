#include "engine/analyze.h"

#include <algorithm>
#include <new>
#include <string>

#include "engine/faults.h"
#include "engine/file_table.h"
#include "engine/read_ahead.h"
#include "errors.h"
#include "kernels/element.h"

namespace pma {
namespace {

constexpr size_t kBlock = size_t(1) << 14;
// Plain inputs are read this many blocks at a time (64 KiB and more of bf16): a read that size
// goes straight to the file, where a block's 32 KiB went through the read-ahead window and one
// more copy.
constexpr size_t kReadBlocks = 4;

// The sums of products of several pairs of arrays of m elements, each added to its `out`. Per
// pair, eight running sums over the elements in steps of eight, then the tail: without fast-math
// the compiler keeps one chain of additions per sum, so a single sum would wait on each addition;
// eight fill the vector units. The order of the additions is fixed, so the result is the same on
// every machine and for any thread count. The pairs are taken together over spans of the arrays
// small enough for the first-level cache, so that each array comes from the second level once
// per block rather than once per pair (the order of each pair's additions is unchanged by that).
struct Sums8 {
  double s[8];
};

struct DotPair {
  const double* a;
  const double* b;
  double* out;
};

[[gnu::target_clones("avx2", "default")]] void dots(const DotPair* pairs, size_t np, size_t m, Sums8* sums) {
  constexpr size_t kSpan = 512;  // 4 KiB of each array
  for (size_t q = 0; q < np; ++q) {
    for (int u = 0; u < 8; ++u) sums[q].s[u] = 0;
  }
  const size_t whole = m - m % 8;
  for (size_t j0 = 0; j0 < whole; j0 += kSpan) {
    const size_t j1 = j0 + kSpan < whole ? j0 + kSpan : whole;
    for (size_t q = 0; q < np; ++q) {
      const double* a = pairs[q].a;
      const double* b = pairs[q].b;
      double acc[8];
      for (int u = 0; u < 8; ++u) acc[u] = sums[q].s[u];
      for (size_t j = j0; j < j1; j += 8) {
        for (int u = 0; u < 8; ++u) acc[u] += a[j + u] * b[j + u];
      }
      for (int u = 0; u < 8; ++u) sums[q].s[u] = acc[u];
    }
  }
  for (size_t q = 0; q < np; ++q) {
    const double* a = pairs[q].a;
    const double* b = pairs[q].b;
    double tail = 0;
    for (size_t j = whole; j < m; ++j) tail += a[j] * b[j];
    const double* x = sums[q].s;
    *pairs[q].out += ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7])) + tail;
  }
}

// Values of m elements as float64, less `minus` (the oldest checkpoint's) when given. One loop
// per dtype, so each vectorises.
template <typename Load>
inline void widen(const uint8_t* raw, size_t m, const double* minus, double* out, Load load) {
  if (minus != nullptr) {
    for (size_t j = 0; j < m; ++j) out[j] = load(raw, j) - minus[j];
  } else {
    for (size_t j = 0; j < m; ++j) out[j] = load(raw, j);
  }
}

[[gnu::target_clones("avx2", "default")]] void to_f64(const uint8_t* raw, DType t, size_t m, const double* minus,
                                                      double* out) {
  const auto bf16 = [](const uint8_t* p, size_t j) { return double(bf16_to_f32(load_as<uint16_t>(p + 2 * j))); };
  const auto f16 = [](const uint8_t* p, size_t j) { return double(f16_to_f32(load_as<uint16_t>(p + 2 * j))); };
  const auto f32 = [](const uint8_t* p, size_t j) { return double(load_as<float>(p + 4 * j)); };
  const auto f64 = [](const uint8_t* p, size_t j) { return load_as<double>(p + 8 * j); };
  switch (t) {
    case DType::BF16: return widen(raw, m, minus, out, bf16);
    case DType::F16: return widen(raw, m, minus, out, f16);
    case DType::F32: return widen(raw, m, minus, out, f32);
    case DType::F64: return widen(raw, m, minus, out, f64);
  }
}

// Block buffers of one chunk, reused from op to op.
struct Buffers {
  std::vector<uint8_t> raw;
  std::vector<float> f32;                  // an FP8 block, dequantised
  std::vector<std::vector<float>> scales;  // an FP8 band's scales, per checkpoint
  std::vector<double> x0, xn;
  std::vector<std::vector<double>> e;
  std::vector<std::vector<uint8_t>> span;  // kReadBlocks blocks of each plain input, as read
  std::vector<DotPair> pairs;
  std::vector<Sums8> sums;
};

// The chunk's ops as analyze_chunk needs them (see analyze.h). Like check_ops for a merge, a
// failure here is a planner bug, never user input.
void check_analyze_ops(const ChunkReads& chunk) {
  size_t checkpoints = 0;
  for (const Op& op : chunk.ops) {
    const size_t n = op.inputs.size();
    if (op.copy()) {
      if (n != 1) {
        throw EngineError(kCodeInternal, "tensor " + op.tensor + ": a copy needs exactly one input", {}, op.tensor);
      }
      continue;
    }
    if (n < 2) {
      throw EngineError(kCodeInternal,
                        "tensor " + op.tensor + ": " + std::to_string(n) +
                            " input(s) to analyse; the deviations need at least 2 checkpoints",
                        {}, op.tensor);
    }
    if (checkpoints == 0) checkpoints = n;
    if (n != checkpoints) {
      throw EngineError(kCodeInternal,
                        "tensor " + op.tensor + ": " + std::to_string(n) + " inputs to analyse where the chunk's " +
                            "other tensors have " + std::to_string(checkpoints),
                        {}, op.tensor);
    }
  }
}

// There is no output to name: the tensor says where.
EngineError out_of_memory_analysing(const Op& op) {
  return EngineError(kCodeNoMem, "out of memory in the native engine while analysing tensor " + op.tensor, {},
                     op.tensor);
}

// The FP8 band's scales of every checkpoint, read once per op.
void load_scales(const Op& op, ReadAhead& in, Buffers& b) {
  if (b.scales.size() < op.inputs.size()) b.scales.resize(op.inputs.size());
  for (size_t k = 0; k < op.inputs.size(); ++k) {
    b.scales[k].resize(op.fp8.scaled ? size_t(op.fp8.scale_count()) : 1);
    fp8_load_scales(op, k, in, b.raw, b.scales[k].data());
  }
}

// Elements [done, done + m) of an FP8 band of checkpoint k as float64, less `minus` when given:
// dequantised with its block scales, as the merge averages it.
void read_fp8_f64(const Op& op, size_t k, uint64_t done, size_t m, ReadAhead& in, Buffers& b, const double* minus,
                  double* out) {
  in.read(op.inputs[k].file, b.raw.data(), m, op.inputs[k].offset + done, op.tensor);
  fp8_dequantise_block(op, done, m, b.scales[k].data(), b.raw.data(), b.f32.data());
  to_f64(reinterpret_cast<const uint8_t*>(b.f32.data()), DType::F32, m, minus, out);
}

// One block of m elements from element `done` of the op (plain inputs: at byte `at` of each input's
// span, read already): the deviations from the oldest checkpoint, and their sums of products.
void analyze_block(const Op& op, uint64_t done, size_t m, size_t at, ReadAhead& in, Buffers& b, OpMoments& r) {
  const size_t n = op.inputs.size();
  const bool fp8 = op.kind == OpKind::Fp8;
  for (size_t k = 0; k < n; ++k) {
    double* out = k == 0 ? b.x0.data() : b.e[k].data();
    const double* minus = k == 0 ? nullptr : b.x0.data();
    if (fp8) read_fp8_f64(op, k, done, m, in, b, minus, out);
    else to_f64(b.span[k].data() + at, op.in, m, minus, out);
  }
  // The newest, whole (FP8: as dequantised, from the block just read).
  if (fp8) to_f64(reinterpret_cast<const uint8_t*>(b.f32.data()), DType::F32, m, nullptr, b.xn.data());
  else to_f64(b.span[n - 1].data() + at, op.in, m, nullptr, b.xn.data());
  // The same sums as r.newest_sq += dot(xn, xn), r.cross[k - 1] += dot(xn, e_k) and the Gram
  // matrix's r.gram[.] += dot(e_k, e_l), taken together.
  b.pairs.clear();
  b.pairs.push_back({b.xn.data(), b.xn.data(), &r.newest_sq});
  size_t g = 0;
  for (size_t k = 1; k < n; ++k) {
    b.pairs.push_back({b.xn.data(), b.e[k].data(), &r.cross[k - 1]});
    for (size_t l = k; l < n; ++l) b.pairs.push_back({b.e[k].data(), b.e[l].data(), &r.gram[g++]});
  }
  b.sums.resize(b.pairs.size());
  dots(b.pairs.data(), b.pairs.size(), m, b.sums.data());
}

void analyze_op(const int32_t* cancel, const Op& op, ReadAhead& in, Buffers& b, OpMoments& r) {
  const size_t n = op.inputs.size();  // >= 2 (check_analyze_ops)
  const uint64_t count = op.kind == OpKind::Fp8 ? op.fp8.elements() : op.count;
  r.gram.assign((n - 1) * n / 2, 0.0);
  r.cross.assign(n - 1, 0.0);
  r.count = count;
  maybe_fail_alloc(op.tensor);
  if (op.kind == OpKind::Fp8) load_scales(op, in, b);
  if (b.raw.size() < kBlock * 8) b.raw.resize(kBlock * 8);
  b.f32.resize(kBlock);
  b.x0.resize(kBlock);
  b.xn.resize(kBlock);
  if (b.e.size() < n) b.e.resize(n);
  for (size_t k = 1; k < n; ++k) b.e[k].resize(kBlock);
  const bool fp8 = op.kind == OpKind::Fp8;
  const size_t is = fp8 ? 1 : dtype_size(op.in);
  if (!fp8) {
    if (b.span.size() < n) b.span.resize(n);
    for (size_t k = 0; k < n; ++k) {
      if (b.span[k].size() < kBlock * kReadBlocks * is) b.span[k].resize(kBlock * kReadBlocks * is);
    }
  }
  for (uint64_t done = 0; done < count;) {
    // FP8 bands are read block by block (their scales go with the block); plain inputs several
    // blocks at a time, then summed block by block all the same.
    const size_t span = size_t(std::min<uint64_t>(fp8 ? kBlock : kBlock * kReadBlocks, count - done));
    if (!fp8) {
      for (size_t k = 0; k < n; ++k) {
        in.read(op.inputs[k].file, b.span[k].data(), span * is, op.inputs[k].offset + done * is, op.tensor);
      }
    }
    for (size_t first = 0; first < span; first += kBlock) {
      check_cancel(cancel, op);
      analyze_block(op, done + first, std::min(kBlock, span - first), first * is, in, b, r);
    }
    done += span;
  }
}

}  // namespace

std::vector<OpMoments> analyze_chunk(const ChunkReads& chunk) {
  check_analyze_ops(chunk);
  FileTable files(chunk.inputs, false);
  ReadAhead in(files);
  Buffers buffers;
  std::vector<OpMoments> out(chunk.ops.size());
  for (size_t i = 0; i < chunk.ops.size(); ++i) {
    const Op& op = chunk.ops[i];
    if (op.copy()) continue;
    try {
      analyze_op(chunk.cancel, op, in, buffers, out[i]);
    } catch (const std::bad_alloc&) {
      throw out_of_memory_analysing(op);
    }
  }
  return out;
}

}  // namespace pma
