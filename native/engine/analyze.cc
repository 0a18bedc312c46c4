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

// A block of a 2-byte dtype is 32 KiB, under kSmallRead: read block by block, it went through the
// read-ahead window and one more copy, for every input. Such inputs are read two blocks at a time
// (64 KiB) straight into a buffer per input, then summed block by block as before. A block of a
// wider dtype is read alone, just before it is converted, while it is in the cache.
inline size_t read_blocks(size_t element_size) {
  const size_t block_bytes = kBlock * element_size;
  return block_bytes >= kSmallRead ? 1 : (kSmallRead + block_bytes - 1) / block_bytes;
}

// Eight running sums: without fast-math the compiler keeps one chain of additions per sum, so
// a single sum would wait on each addition; eight fill the vector units. The order of the
// additions is fixed, so the result is the same on every machine and for any thread count.
[[gnu::target_clones("avx2", "default")]] double dot(const double* a, const double* b, size_t m) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t j = 0;
  for (; j + 8 <= m; j += 8) {
    for (int u = 0; u < 8; ++u) s[u] += a[j + u] * b[j + u];
  }
  double tail = 0;
  for (; j < m; ++j) tail += a[j] * b[j];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
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
  std::vector<std::vector<uint8_t>> span;  // inputs read several blocks at a time (read_blocks)
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

// Elements [done, done + m) of checkpoint k as float64, less `minus` when given: FP8 dequantised
// with its block scales, as the merge averages it. `at`: where the block starts in the input's
// span, when it was read already (read_blocks > 1); else it is read here.
void read_f64(const Op& op, size_t k, uint64_t done, size_t m, const uint8_t* at, ReadAhead& in, Buffers& b,
              const double* minus, double* out) {
  if (at != nullptr) return to_f64(at, op.in, m, minus, out);
  if (op.kind != OpKind::Fp8) {
    const size_t is = dtype_size(op.in);
    in.read(op.inputs[k].file, b.raw.data(), m * is, op.inputs[k].offset + done * is, op.tensor);
    return to_f64(b.raw.data(), op.in, m, minus, out);
  }
  in.read(op.inputs[k].file, b.raw.data(), m, op.inputs[k].offset + done, op.tensor);
  fp8_dequantise_block(op, done, m, b.scales[k].data(), b.raw.data(), b.f32.data());
  to_f64(reinterpret_cast<const uint8_t*>(b.f32.data()), DType::F32, m, minus, out);
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
  const size_t is = op.kind == OpKind::Fp8 ? 1 : dtype_size(op.in);
  const size_t blocks = op.kind == OpKind::Fp8 ? 1 : read_blocks(is);
  if (blocks > 1) {
    if (b.span.size() < n) b.span.resize(n);
    for (size_t k = 0; k < n; ++k) {
      if (b.span[k].size() < kBlock * blocks * is) b.span[k].resize(kBlock * blocks * is);
    }
  }
  uint64_t read_to = 0;  // with blocks > 1: the elements read into the spans, from span_at
  uint64_t span_at = 0;
  for (uint64_t done = 0; done < count;) {
    check_cancel(cancel, op);
    const size_t m = size_t(std::min<uint64_t>(kBlock, count - done));
    if (blocks > 1 && done == read_to) {
      const size_t span = size_t(std::min<uint64_t>(kBlock * blocks, count - done));
      for (size_t k = 0; k < n; ++k) {
        in.read(op.inputs[k].file, b.span[k].data(), span * is, op.inputs[k].offset + done * is, op.tensor);
      }
      span_at = done;
      read_to = done + span;
    }
    const auto in_span = [&](size_t k) { return blocks > 1 ? b.span[k].data() + (done - span_at) * is : nullptr; };
    for (size_t k = 0; k < n; ++k) {
      read_f64(op, k, done, m, in_span(k), in, b, k == 0 ? nullptr : b.x0.data(), k == 0 ? b.x0.data() : b.e[k].data());
      // The newest, whole, from the block just read (FP8: as dequantised).
      if (k == n - 1) {
        if (op.kind == OpKind::Fp8)
          to_f64(reinterpret_cast<const uint8_t*>(b.f32.data()), DType::F32, m, nullptr, b.xn.data());
        else to_f64(blocks > 1 ? in_span(k) : b.raw.data(), op.in, m, nullptr, b.xn.data());
      }
    }
    r.newest_sq += dot(b.xn.data(), b.xn.data(), m);
    size_t at = 0;
    for (size_t k = 1; k < n; ++k) {
      r.cross[k - 1] += dot(b.xn.data(), b.e[k].data(), m);
      for (size_t l = k; l < n; ++l) r.gram[at++] += dot(b.e[k].data(), b.e[l].data(), m);
    }
    done += m;
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
