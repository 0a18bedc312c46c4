#include "engine/chunk.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "engine/faults.h"
#include "engine/file_io.h"
#include "engine/file_table.h"
#include "engine/fp_env.h"
#include "engine/output_writer.h"
#include "engine/read_ahead.h"
#include "engine/sigbus_guard.h"
#include "engine/stopwatch.h"
#include "errors.h"

namespace pma {

// Every block costs a pread per input (and a pwrite), and where system calls trap (a VM) they cost
// more than copying 64 KiB: 2 threads merged 5 x 1 GB bf16 7-10% faster with 256Ki elements a
// block than with 32Ki (bench/against-commit.bench.js).
size_t pread_block_elems(size_t inputs, size_t in_size) {
  constexpr size_t kMinBlockElems = size_t(1) << 15;
  constexpr size_t kMaxBlockElems = size_t(1) << 18;
  constexpr size_t kBlockInputBytes = size_t(4) << 20;
  const size_t e = kBlockInputBytes / (inputs * in_size);
  return e < kMinBlockElems ? kMinBlockElems : e > kMaxBlockElems ? kMaxBlockElems : e;
}

namespace {

// Elements per block of a mapped merge: input blocks of all N checkpoints plus the output block stay in L2.
constexpr size_t kBlockElems = size_t(1) << 15;
constexpr size_t kMapWindowBytes = size_t(8) << 20;
// An op with less than this of each input is read, not mapped, under --io mmap: a mapping costs
// two system calls and a fault or more whatever its size, so a small one costs more than copying
// its bytes (about even at 256 KiB on a VM whose faults are cheap, a third less than the copy at
// 1 MiB), and a million tiny tensors would map and unmap a million times.
constexpr size_t kMinMapBytes = size_t(1) << 20;
constexpr size_t kCopyBytes = size_t(1) << 20;

MergeArgs base_args(const ChunkSpec& spec, const Op& op) {
  MergeArgs a{};
  a.n = int(op.inputs.size());
  a.w32 = spec.w32.data();
  a.w64 = spec.w64.data();
  a.acc_f64 = spec.acc_f64;
  a.in = op.in;
  a.out = op.out;
  return a;
}

void merge_pread(const ChunkSpec& spec, uint32_t op_index, const Op& op, ReadAhead& in, OutputWriter& out, Scratch& s,
                 ChunkStats& st) {
  const size_t n = op.inputs.size();
  const size_t is = dtype_size(op.in), os = dtype_size(op.out);
  const size_t block = pread_block_elems(n, is);
  if (s.in.size() < n) s.in.resize(n);
  s.ptrs.resize(n);
  for (size_t k = 0; k < n; ++k) {
    grow(s.in[k], block * is, op.tensor);
    s.ptrs[k] = s.in[k].data();
  }
  grow(s.out, block * os, op.tensor);
  MergeArgs a = base_args(spec, op);
  a.src = s.ptrs.data();
  a.dst = s.out.data();
  for (uint64_t done = 0; done < op.count;) {
    check_cancel(spec.cancel, op);
    const size_t m = size_t(std::min<uint64_t>(block, op.count - done));
    for (size_t k = 0; k < n; ++k) {
      in.read(op.inputs[k].file, s.in[k].data(), m * is, op.inputs[k].offset + done * is, op.tensor);
      Timed t(st.scan_ns);
      note_nonfinite(st, op_index, uint32_t(k), count_nonfinite(s.in[k].data(), op.in, m));
    }
    a.count = m;
    merge(spec.kernel, a);
    out.write(op.out_file, op.out_offset + done * os, s.out.data(), m * os, op.tensor);
    st.bytes_read += uint64_t(m * is * n);
    st.bytes_written += uint64_t(m * os);
    done += m;
  }
}

// One block of a mapped merge, as plain data: it runs under the SIGBUS guard, which abandons it at
// a faulting load, so it owns nothing and allocates nothing.
struct MappedBlock {
  const ChunkSpec* spec;
  const MergeArgs* args;
  const uint8_t** ptrs;
  uint8_t* dst;
  uint64_t* counts;
  uint64_t* scan_ns;
  size_t done;
  size_t m;
};

void merge_mapped_block(void* ctx) {
  auto& b = *static_cast<MappedBlock*>(ctx);
  MergeArgs x = advance(*b.args, b.done, b.m, b.ptrs);
  x.dst = b.dst;
  // Plain clock reads, no guard object: a fault abandons this function without unwinding it. Through
  // a mapping the scan is the first touch of the input pages, so its time includes reading them.
  const uint64_t t0 = now_ns();
  for (int k = 0; k < x.n; ++k) b.counts[k] = count_nonfinite(x.src[k], x.in, b.m);
  *b.scan_ns += now_ns() - t0;
  merge(b.spec->kernel, x);
}

// The op's distinct input files, for an error that cannot tell which one faulted.
std::string input_list(const ChunkSpec& spec, FileTable& in, const Op& op) {
  std::string s;
  std::vector<uint32_t> seen;
  for (const InputRange& r : op.inputs) {
    if (std::find(seen.begin(), seen.end(), r.file) != seen.end()) continue;
    seen.push_back(r.file);
    if (!s.empty()) s += ", ";
    s += spec.inputs.at(r.file);
  }
  return s;
}

// Elements of each input mapped at a time: a window of about 8 MiB per input, in whole blocks.
// Mapping a whole op (up to a chunk, 256 MiB) would hold that much of the page cache in the
// process's RSS per thread; windows bound it. The mappings start and end on 2 MiB file offsets
// (Mapping), so the kernel can map large page-cache folios whole: 8 MiB windows cost about as
// much to map per GB as whole tensors on Linux 6.18, 1 MiB windows eight times more.
size_t map_window_elems(size_t in_size) {
  const size_t e = kMapWindowBytes / in_size;
  return std::max(kBlockElems, e - e % kBlockElems);
}

void merge_mmap(const ChunkSpec& spec, uint32_t op_index, const Op& op, FileTable& in, OutputWriter& out, Scratch& s,
                ChunkStats& st) {
  const size_t n = op.inputs.size();
  const size_t is = dtype_size(op.in), os = dtype_size(op.out);
  const size_t window = map_window_elems(is);
  std::vector<Mapping> maps;
  maps.reserve(n);
  std::vector<const uint8_t*> base(n);
  grow(s.out, kBlockElems * os, op.tensor);
  s.ptrs.resize(n);
  MergeArgs a = base_args(spec, op);
  a.src = base.data();
  a.dst = s.out.data();
  std::vector<uint64_t> counts(n);
  MappedBlock blk{&spec, &a, s.ptrs.data(), s.out.data(), counts.data(), &st.scan_ns, 0, 0};
  for (uint64_t first = 0; first < op.count; first += window) {
    const size_t w = size_t(std::min<uint64_t>(window, op.count - first));
    maps.clear();  // unmaps the last window before mapping the next
    for (size_t k = 0; k < n; ++k) {
      maps.emplace_back(in.get(op.inputs[k].file), op.inputs[k].offset + first * is, w * is, op.tensor);
      base[k] = maps.back().data();
    }
    for (size_t done = 0; done < w;) {
      check_cancel(spec.cancel, op);
      const size_t m = std::min(kBlockElems, w - done);
      blk.done = done;
      blk.m = m;
      if (!run_sigbus_guarded(merge_mapped_block, &blk)) {
        throw EngineError(
            kCodeInput,
            "an input of tensor " + op.tensor + " could not be read through its mapping (truncated by " +
                "another process while the merge ran, or a read error); inputs: " + input_list(spec, in, op),
            in.get(op.inputs[0].file).path(), op.tensor);
      }
      for (size_t k = 0; k < n; ++k) note_nonfinite(st, op_index, uint32_t(k), counts[k]);
      out.write(op.out_file, op.out_offset + (first + done) * os, s.out.data(), m * os, op.tensor);
      st.bytes_read += uint64_t(m * is * n);
      st.bytes_written += uint64_t(m * os);
      done += m;
    }
  }
}

void copy_op(const ChunkSpec& spec, const Op& op, ReadAhead& in, OutputWriter& out, Scratch& s, ChunkStats& st) {
  grow(s.out, kCopyBytes, op.tensor);
  for (uint64_t done = 0; done < op.bytes;) {
    check_cancel(spec.cancel, op);
    const size_t m = size_t(std::min<uint64_t>(kCopyBytes, op.bytes - done));
    in.read(op.inputs.at(0).file, s.out.data(), m, op.inputs[0].offset + done, op.tensor);
    out.write(op.out_file, op.out_offset + done, s.out.data(), m, op.tensor);
    st.bytes_read += m;
    st.bytes_written += m;
    done += m;
  }
}

// The exponent field all ones: infinity or NaN. Plain loops over integers that g++ vectorises;
// compiled three times, for the baseline and for AVX2 and AVX-512 (chosen at run time), since
// the scan reads every input byte the merge reads.
//
// Almost every block has none, so a first pass only finds the largest magnitude (sign bit
// cleared): x is NaN or Inf exactly when |x| as an integer is at least the exponent mask. That
// pass is a max over the block's own integer width, which vectorises without widening; the count,
// which widens every element to a 64-bit sum, runs only for a block that has some.
template <typename U>
[[gnu::always_inline]] inline uint64_t count_exp_all_ones(const uint8_t* p, size_t n, U mask) {
  const U magnitude = U(~U(0)) >> 1;
  U largest = 0;
  for (size_t j = 0; j < n; ++j) {
    U v;
    std::memcpy(&v, p + j * sizeof(U), sizeof(U));
    const U m = v & magnitude;
    largest = m > largest ? m : largest;
  }
  if (largest < mask) return 0;
  uint64_t c = 0;
  for (size_t j = 0; j < n; ++j) {
    U v;
    std::memcpy(&v, p + j * sizeof(U), sizeof(U));
    c += (v & mask) == mask;
  }
  return c;
}

template <typename U>
uint64_t scan_base(const uint8_t* p, size_t n, U mask) {
  return count_exp_all_ones(p, n, mask);
}
template <typename U>
__attribute__((target("avx2"))) uint64_t scan_avx2(const uint8_t* p, size_t n, U mask) {
  return count_exp_all_ones(p, n, mask);
}
template <typename U>
__attribute__((target("avx512f,avx512bw,avx512vl"))) uint64_t scan_avx512(const uint8_t* p, size_t n, U mask) {
  return count_exp_all_ones(p, n, mask);
}

template <typename U>
uint64_t scan(const uint8_t* p, size_t n, U mask) {
  static const Kernel best = best_kernel();
  switch (best) {
    case Kernel::Avx512: return scan_avx512(p, n, mask);
    case Kernel::Avx2: return scan_avx2(p, n, mask);
    case Kernel::Scalar: break;
  }
  return scan_base(p, n, mask);
}

// An FP8 band the engine can run: a planner bug otherwise, never user input.
void check_fp8(const ChunkSpec& spec, const Op& op) {
  const Fp8Band& b = op.fp8;
  const char* why = nullptr;
  if (b.cols == 0 || b.block_rows == 0 || b.block_cols == 0) why = "an FP8 band needs columns and a block size";
  else if (b.scaled && b.scales.size() != op.inputs.size()) why = "an FP8 band needs one scale range per input";
  else if (b.requantise && b.scaled && (b.row0 % b.block_rows != 0))
    why = "a requantised FP8 band must start on a block row";
  else if (spec.acc_f64) why = "FP8 bands accumulate in f32 only";
  if (why != nullptr) throw EngineError(kCodeInternal, "tensor " + op.tensor + ": " + why, {}, op.tensor);
}

}  // namespace

void grow(std::vector<uint8_t>& v, size_t n, const std::string& tensor) {
  maybe_fail_alloc(tensor);
  if (v.size() < n) v.resize(n);
}

uint64_t count_nonfinite(const uint8_t* p, DType t, size_t n) {
  switch (t) {
    case DType::BF16: return scan<uint16_t>(p, n, 0x7F80u);
    case DType::F16: return scan<uint16_t>(p, n, 0x7C00u);
    case DType::F32: return scan<uint32_t>(p, n, 0x7F800000u);
    case DType::F64: return scan<uint64_t>(p, n, 0x7FF0000000000000ull);
  }
  return 0;
}

void note_nonfinite(ChunkStats& st, uint32_t op, uint32_t input, uint64_t count) {
  if (count == 0) return;
  for (NonFinite& x : st.nonfinite) {
    if (x.op == op && x.input == input) {
      x.count += count;
      return;
    }
  }
  st.nonfinite.push_back(NonFinite{op, input, count});
}

void check_cancel(const int32_t* cancel, const Op& op) {
  if (cancel != nullptr && __atomic_load_n(cancel, __ATOMIC_RELAXED) != 0) {
    throw EngineError(kCodeAborted, "the merge was stopped while writing tensor " + op.tensor, {}, op.tensor);
  }
}

EngineError out_of_memory(const ChunkSpec& spec, const Op& op) {
  const std::string& file = spec.outputs.at(op.out_file);
  return EngineError(kCodeNoMem,
                     "out of memory in the native engine while merging tensor " + op.tensor + " into " + file, file,
                     op.tensor);
}

void check_ops(const ChunkSpec& spec) {
  for (const Op& op : spec.ops) {
    if (!op.copy() && op.inputs.size() != spec.w32.size()) {
      throw EngineError(kCodeInternal,
                        "tensor " + op.tensor + ": " + std::to_string(op.inputs.size()) + " inputs for " +
                            std::to_string(spec.w32.size()) + " weights",
                        {}, op.tensor);
    }
    if (op.copy() && op.inputs.size() != 1) {
      throw EngineError(kCodeInternal, "tensor " + op.tensor + ": a copy needs exactly one input", {}, op.tensor);
    }
    if (op.kind == OpKind::Fp8) check_fp8(spec, op);
  }
}

void run_ops_on_cpu(const ChunkSpec& spec, Scratch& scratch, bool (*pick)(const Op&), ChunkStats& st) {
  FpEnvGuard fp;
  FileTable in(spec.inputs, false);
  ReadAhead reader(in);
  FileTable out(spec.outputs, true);
  OutputWriter writer(out, spec.direct_write, scratch.direct, spec.writes, spec.ticket);
  check_ops(spec);
  for (uint32_t i = 0; i < spec.ops.size(); ++i) {
    const Op& op = spec.ops[i];
    if (!pick(op)) continue;
    try {
      switch (op.kind) {
        case OpKind::Copy: copy_op(spec, op, reader, writer, scratch, st); break;
        case OpKind::Fp8: fp8_op(spec, i, op, reader, writer, scratch, st); break;
        case OpKind::Merge:
          if (spec.io == IoMode::Mmap && op.count * dtype_size(op.in) >= kMinMapBytes)
            merge_mmap(spec, i, op, in, writer, scratch, st);
          else merge_pread(spec, i, op, reader, writer, scratch, st);
          break;
      }
    } catch (const std::bad_alloc&) {
      throw out_of_memory(spec, op);
    }
    writer.completed(op.out_file, op.out_offset, out_bytes(op), op.tensor);
    if (spec.drop_cache) {
      for (const InputRange& r : op.inputs) in.get(r.file).drop(r.offset, in_bytes(op));
    }
  }
  writer.flush();
  st.read_ns += reader.ns;
  st.write_ns += writer.ns;
  // Output pages are dropped last: by now most of the chunk's writeback has completed, so the
  // wait is short and the disk stayed busy while the chunk computed.
  if (spec.drop_cache) {
    Timed t(st.write_ns);
    for (const Op& op : spec.ops) {
      if (!pick(op)) continue;
      out.get(op.out_file).flush_and_drop(op.out_offset, out_bytes(op), op.tensor);
      if (fp8_scale_out_bytes(op) > 0) {
        out.get(op.fp8.scale_out_file).flush_and_drop(op.fp8.scale_out_offset, fp8_scale_out_bytes(op), op.tensor);
      }
    }
  }
}

ChunkStats run_chunk(const ChunkSpec& spec, Scratch& scratch) {
  ChunkStats st;
  run_ops_on_cpu(
      spec, scratch, [](const Op&) { return true; }, st);
  return st;
}

}  // namespace pma
