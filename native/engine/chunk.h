// A chunk of a merge plan as plain C++ data, copied out of the JS task on the calling thread.
// run_chunk reads the listed byte ranges, merges or copies them, and writes the output ranges.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"
#include "engine/output_writer.h"
#include "errors.h"
#include "kernels/fp8.h"
#include "kernels/kernels.h"

namespace pma {

enum class IoMode : uint8_t { Pread = 0, Mmap = 1 };

struct InputRange {
  uint32_t file;    // index into ChunkReads::inputs
  uint64_t offset;  // absolute byte offset in that file
};

// Merge: average `count` elements. Copy: `bytes` from inputs[0]. Fp8: a band of a block-scaled
// FP8 tensor, dequantised, averaged and written dequantised or requantised (Op::fp8).
enum class OpKind : uint8_t { Merge = 0, Copy = 1, Fp8 = 2 };

// A band of rows [row0, row0 + rows) of an FP8 tensor viewed as [tensor rows, cols], with one
// scale per block_rows x block_cols block (docs/contract.md, "FP8"). The band spans whole rows,
// so each checkpoint's scales for it are contiguous: rows row0 / block_rows ... of the grid.
struct Fp8Band {
  Fp8 in = Fp8::E4M3;
  // Requantise into `in`'s format with fresh block scales; otherwise write Op::out (a float dtype).
  bool requantise = false;
  uint64_t rows = 0, cols = 0, row0 = 0;
  uint64_t block_rows = 1, block_cols = 1;
  // False: the tensor has no scale tensor (its scale is 1; a requantised output is encoded as is).
  bool scaled = false;
  DType scale = DType::F32;
  std::vector<InputRange> scales;  // one per checkpoint: the band's first scale
  uint32_t scale_out_file = 0;     // requantise && scaled: where the band's new scales go
  uint64_t scale_out_offset = 0;

  uint64_t elements() const { return rows * cols; }
  uint64_t scale_rows() const { return rows == 0 ? 0 : (row0 + rows - 1) / block_rows - row0 / block_rows + 1; }
  uint64_t scale_cols() const { return (cols + block_cols - 1) / block_cols; }
  uint64_t scale_count() const { return scaled ? scale_rows() * scale_cols() : 0; }
};

struct Op {
  OpKind kind = OpKind::Merge;
  std::string tensor;     // for error messages
  uint32_t out_file = 0;  // index into ChunkSpec::outputs
  uint64_t out_offset = 0;
  DType in = DType::F32;
  DType out = DType::F32;
  uint64_t count = 0;              // elements to merge
  uint64_t bytes = 0;              // bytes to copy
  std::vector<InputRange> inputs;  // oldest -> newest, one per weight
  Fp8Band fp8;                     // kind == Fp8

  bool copy() const { return kind == OpKind::Copy; }
};

// What a chunk reads: its input files, its ops and its cancel flag. All that analyze_chunk needs.
struct ChunkReads {
  std::vector<std::string> inputs;
  std::vector<Op> ops;
  // A flag the owner sets (from any thread) to stop: checked between blocks, so a chunk of any
  // size stops within milliseconds. Null: never stopped.
  const int32_t* cancel = nullptr;
};

// A merge chunk: what it reads, and where and how it writes.
struct ChunkSpec : ChunkReads {
  std::vector<std::string> outputs;
  std::vector<float> w32;
  std::vector<double> w64;
  bool acc_f64 = false;
  Kernel kernel = Kernel::Scalar;
  IoMode io = IoMode::Pread;
  // Drop what the chunk read and wrote from the page cache once done (merges larger than RAM).
  bool drop_cache = false;
  // Write the aligned middle of each output run with O_DIRECT (see output_writer.h); on the CPU,
  // through `writes` when given, reporting to `ticket` (direct_writes.h). Neither is owned.
  bool direct_write = false;
  DirectWrites* writes = nullptr;
  WriteTicket* ticket = nullptr;
  // -1: the CPU kernels; otherwise the CUDA device to merge on, with its memory budget in bytes.
  int device = -1;
  uint64_t gpu_memory = 0;
};

// Elements per block of `inputs` inputs of `in_size` bytes each, read with pread: the inputs'
// blocks within 4 MiB together (the last-level cache), from 32Ki to 256Ki elements. The merge's
// blocks, and pma analyze's reads.
size_t pread_block_elems(size_t inputs, size_t in_size);

// Throws E_ABORTED (naming op's tensor) once the cancel flag is set. What was written stays, and
// the chunk is not reported done, so a resumed merge runs it again.
void check_cancel(const int32_t* cancel, const Op& op);

// The E_NOMEM error for an allocation that failed while running op: names the tensor and output.
EngineError out_of_memory(const ChunkSpec& spec, const Op& op);

// NaN or infinity found in input `input` (checkpoint index) of op `op` of the chunk.
struct NonFinite {
  uint32_t op = 0;
  uint32_t input = 0;
  uint64_t count = 0;
};

struct ChunkStats {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  std::vector<NonFinite> nonfinite;
  // Nanoseconds of this thread in reading the inputs, scanning them for NaN/Inf, and writing the
  // output (writeback waits included); the rest of the chunk's time is arithmetic.
  uint64_t read_ns = 0;
  uint64_t scan_ns = 0;
  uint64_t write_ns = 0;
};

// Counts NaN and infinity among n elements of dtype t: one pass over data the merge has just
// read (still in cache), so that a checkpoint from a loss spike is caught, not averaged in.
uint64_t count_nonfinite(const uint8_t* p, DType t, size_t n);

// Adds `count` for (op, input) to the stats, merging with the previous entry of the same pair.
void note_nonfinite(ChunkStats& st, uint32_t op, uint32_t input, uint64_t count);

// Reusable buffers of one JS environment (one worker thread): grown on demand, never shrunk.
struct Scratch {
  std::vector<std::vector<uint8_t>> in;
  std::vector<uint8_t> out;
  std::vector<const uint8_t*> ptrs;
  std::vector<float> acc;     // an FP8 band's accumulators
  std::vector<float> scales;  // an FP8 band's scales, per checkpoint, as f32
  AlignedBuffer direct;
};

// Grows a scratch buffer to at least n bytes (an allocation the fault injection can fail, for
// `tensor`); never shrinks it.
void grow(std::vector<uint8_t>& v, size_t n, const std::string& tensor);

ChunkStats run_chunk(const ChunkSpec& spec, Scratch& scratch);
// Runs the ops of `spec` that `pick` accepts on the CPU, adding to `st`: run_chunk runs all of
// them; the CUDA engine hands its FP8 ops here (docs/gpu.md).
void run_ops_on_cpu(const ChunkSpec& spec, Scratch& scratch, bool (*pick)(const Op&), ChunkStats& st);
// Throws when an op's inputs do not match the weights (a planner bug, never user input).
void check_ops(const ChunkSpec& spec);

// Byte counts of an op, used by both the CPU and the CUDA engine: its main output range (an FP8
// band's scales go to a range of their own, fp8_scale_out_bytes) and each input range.
inline uint64_t out_bytes(const Op& op) {
  switch (op.kind) {
    case OpKind::Copy: return op.bytes;
    case OpKind::Fp8: return op.fp8.elements() * (op.fp8.requantise ? 1 : dtype_size(op.out));
    case OpKind::Merge: break;
  }
  return op.count * dtype_size(op.out);
}
inline uint64_t in_bytes(const Op& op) {
  switch (op.kind) {
    case OpKind::Copy: return op.bytes;
    case OpKind::Fp8: return op.fp8.elements();
    case OpKind::Merge: break;
  }
  return op.count * dtype_size(op.in);
}
inline uint64_t fp8_scale_out_bytes(const Op& op) {
  return op.kind == OpKind::Fp8 && op.fp8.requantise ? op.fp8.scale_count() * dtype_size(op.fp8.scale) : 0;
}

// The FP8 band of `op` (engine/fp8_op.cc): reads, dequantises, averages and writes it.
class ReadAhead;
void fp8_op(const ChunkSpec& spec, uint32_t op_index, const Op& op, ReadAhead& in, OutputWriter& out, Scratch& s,
            ChunkStats& st);
// Checkpoint k's scales for the band of `op` as f32 (op.fp8.scale_count() of them, or one 1 for
// a tensor without scales), read through `raw`.
void fp8_load_scales(const Op& op, size_t k, ReadAhead& in, std::vector<uint8_t>& raw, float* out);
// Elements [first, first + m) of the band of `op` in `q` (checkpoint k's bytes), dequantised
// with that checkpoint's `scales` into `out`: the values `pma analyze` compares are the ones the
// merge averages. Returns how many are NaN or infinite.
uint64_t fp8_dequantise_block(const Op& op, uint64_t first, size_t m, const float* scales, const uint8_t* q,
                              float* out);

}  // namespace pma
