// A chunk of a merge plan as plain C++ data, copied out of the JS task on the calling thread.
// run_chunk reads the listed byte ranges, merges or copies them, and writes the output ranges.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"
#include "engine/output_writer.h"
#include "errors.h"
#include "kernels/kernels.h"

namespace pma {

enum class IoMode : uint8_t { Pread = 0, Mmap = 1 };

struct InputRange {
  uint32_t file;    // index into ChunkReads::inputs
  uint64_t offset;  // absolute byte offset in that file
};

struct Op {
  bool copy = false;      // copy `bytes` from inputs[0] instead of merging
  std::string tensor;     // for error messages
  uint32_t out_file = 0;  // index into ChunkSpec::outputs
  uint64_t out_offset = 0;
  DType in = DType::F32;
  DType out = DType::F32;
  uint64_t count = 0;              // elements to merge
  uint64_t bytes = 0;              // bytes to copy
  std::vector<InputRange> inputs;  // oldest -> newest, one per weight
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
  // Write the aligned middle of each output run with O_DIRECT (see output_writer.h).
  bool direct_write = false;
  // -1: the CPU kernels; otherwise the CUDA device to merge on, with its memory budget in bytes.
  int device = -1;
  uint64_t gpu_memory = 0;
};

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
  AlignedBuffer direct;
};

ChunkStats run_chunk(const ChunkSpec& spec, Scratch& scratch);
// Throws when an op's inputs do not match the weights (a planner bug, never user input).
void check_ops(const ChunkSpec& spec);

// Byte counts of an op, used by both the CPU and the CUDA engine.
inline uint64_t out_bytes(const Op& op) { return op.copy ? op.bytes : op.count * dtype_size(op.out); }
inline uint64_t in_bytes(const Op& op) { return op.copy ? op.bytes : op.count * dtype_size(op.in); }

}  // namespace pma
