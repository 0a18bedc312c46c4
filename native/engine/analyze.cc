#include "engine/analyze.h"

#include <algorithm>
#include <new>
#include <string>

#include "engine/faults.h"
#include "engine/file_table.h"
#include "engine/read_ahead.h"
#include "errors.h"
#include "kernels/element.h"
#include "kernels/moments.h"

namespace pma {
namespace {

constexpr size_t kBlock = size_t(1) << 14;

// Every checkpoint's block is read into a buffer of its own, then the block is summed sub-block by
// sub-block. The inputs are read several blocks at a time, as many as the merge's pread blocks
// hold (pread_block_elems: reads of 64 KiB and more, up to 4 MiB for all inputs together), so that
// reads skip the read-ahead window's extra copy and system calls do not count.
inline size_t read_blocks(size_t element_size, size_t n) {
  return std::max<size_t>(1, pread_block_elems(n, element_size) / kBlock);
}

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
void load_scales(const Op& op, ReadAhead& in, AnalyzeScratch& b) {
  if (b.scales.size() < op.inputs.size()) b.scales.resize(op.inputs.size());
  for (size_t k = 0; k < op.inputs.size(); ++k) {
    b.scales[k].resize(op.fp8.scaled ? size_t(op.fp8.scale_count()) : 1);
    fp8_load_scales(op, k, in, b.raw, b.scales[k].data());
  }
}

// Elements kept as float64 at once: all n + 1 sub-block vectors within 16 KiB, in the L1 cache
// while every pair's products are summed. A multiple of 8, so the lanes keep their elements.
size_t sub_block(size_t n) { return std::max<size_t>(64, (size_t(16) << 10) / (8 * (n + 1)) & ~size_t(7)); }

// Adds one block's sums to r: m elements of each checkpoint, of dtype t, at b.at[k]. Per pair, the
// block's 8 lanes are added in a fixed tree, then the tail (the last m % 8 elements, in order),
// so the result is the same on every machine, for any kernel and thread count.
void add_block(Kernel kernel, DType t, size_t n, size_t m, AnalyzeScratch& b, OpMoments& r) {
  const size_t is = dtype_size(t);
  const size_t pairs = n * (n + 1) / 2;
  const size_t whole = m & ~size_t(7);
  b.lanes.assign(pairs * 8, 0.0);
  b.tail.assign(pairs, 0.0);
  // The sub-block's vectors as float64 (the newest; then e_k), from element `first` on.
  const auto widen = [&](size_t first, size_t count) {
    to_f64(kernel, b.at[0] + first * is, t, count, nullptr, b.x0.data());
    to_f64(kernel, b.at[n - 1] + first * is, t, count, nullptr, b.v[0].data());
    for (size_t k = 1; k < n; ++k) to_f64(kernel, b.at[k] + first * is, t, count, b.x0.data(), b.v[k].data());
  };
  if (!gram_raw(kernel, b.at.data(), t, int(n), whole, b.lanes.data())) {
    const size_t s = sub_block(n);
    for (size_t first = 0; first < whole; first += s) {
      const size_t sm = std::min(s, whole - first);
      widen(first, sm);
      gram_lanes(kernel, b.vp.data(), int(n), sm, b.lanes.data());
    }
  }
  if (whole < m) {
    widen(whole, m - whole);
    size_t p = 0;
    for (size_t x = 0; x < n; ++x) {
      for (size_t y = x; y < n; ++y, ++p) {
        for (size_t j = 0; j < m - whole; ++j) b.tail[p] += b.v[x][j] * b.v[y][j];
      }
    }
  }
  // Pair (0, 0) is the newest's square, (0, k) its product with e_k, (k, l) the Gram matrix.
  size_t p = 0, at = 0;
  for (size_t x = 0; x < n; ++x) {
    for (size_t y = x; y < n; ++y, ++p) {
      const double* l = b.lanes.data() + 8 * p;
      const double sum = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])) + b.tail[p];
      if (x == 0 && y == 0) r.newest_sq += sum;
      else if (x == 0) r.cross[y - 1] += sum;
      else r.gram[at++] += sum;
    }
  }
}

void analyze_op(const int32_t* cancel, Kernel kernel, const Op& op, ReadAhead& in, AnalyzeScratch& b, OpMoments& r) {
  const size_t n = op.inputs.size();  // >= 2 (check_analyze_ops)
  const bool fp8 = op.kind == OpKind::Fp8;
  const uint64_t count = fp8 ? op.fp8.elements() : op.count;
  r.gram.assign((n - 1) * n / 2, 0.0);
  r.cross.assign(n - 1, 0.0);
  r.count = count;
  maybe_fail_alloc(op.tensor);
  const size_t s = sub_block(n);
  b.x0.resize(s);
  if (b.v.size() < n) b.v.resize(n);
  b.vp.resize(n);
  for (size_t k = 0; k < n; ++k) {
    b.v[k].resize(s);
    b.vp[k] = b.v[k].data();
  }
  b.at.resize(n);
  const size_t is = fp8 ? 1 : dtype_size(op.in);
  const size_t blocks = fp8 ? 1 : read_blocks(is, n);
  if (fp8) {
    load_scales(op, in, b);
    if (b.raw.size() < kBlock) b.raw.resize(kBlock);
    if (b.f32.size() < n) b.f32.resize(n);
    for (size_t k = 0; k < n; ++k) b.f32[k].resize(kBlock);
  } else {
    if (b.span.size() < n) b.span.resize(n);
    for (size_t k = 0; k < n; ++k) {
      if (b.span[k].size() < kBlock * blocks * is) b.span[k].resize(kBlock * blocks * is);
    }
  }
  uint64_t read_to = 0;  // the elements read into the spans, from span_at
  uint64_t span_at = 0;
  for (uint64_t done = 0; done < count;) {
    check_cancel(cancel, op);
    const size_t m = size_t(std::min<uint64_t>(kBlock, count - done));
    if (fp8) {
      // FP8: each checkpoint's block dequantised with its scales, as the merge averages it.
      for (size_t k = 0; k < n; ++k) {
        in.read(op.inputs[k].file, b.raw.data(), m, op.inputs[k].offset + done, op.tensor);
        fp8_dequantise_block(op, done, m, b.scales[k].data(), b.raw.data(), b.f32[k].data());
        b.at[k] = reinterpret_cast<const uint8_t*>(b.f32[k].data());
      }
    } else {
      if (done == read_to) {
        const size_t span = size_t(std::min<uint64_t>(kBlock * blocks, count - done));
        for (size_t k = 0; k < n; ++k) {
          in.read(op.inputs[k].file, b.span[k].data(), span * is, op.inputs[k].offset + done * is, op.tensor);
        }
        span_at = done;
        read_to = done + span;
      }
      for (size_t k = 0; k < n; ++k) b.at[k] = b.span[k].data() + (done - span_at) * is;
    }
    add_block(kernel, fp8 ? DType::F32 : op.in, n, m, b, r);
    done += m;
  }
}

}  // namespace

std::vector<OpMoments> analyze_chunk(const ChunkReads& chunk, Kernel kernel, AnalyzeScratch& buffers) {
  check_analyze_ops(chunk);
  FileTable files(chunk.inputs, false);
  ReadAhead in(files);
  std::vector<OpMoments> out(chunk.ops.size());
  for (size_t i = 0; i < chunk.ops.size(); ++i) {
    const Op& op = chunk.ops[i];
    if (op.copy()) continue;
    try {
      analyze_op(chunk.cancel, kernel, op, in, buffers, out[i]);
    } catch (const std::bad_alloc&) {
      throw out_of_memory_analysing(op);
    }
  }
  return out;
}

}  // namespace pma
