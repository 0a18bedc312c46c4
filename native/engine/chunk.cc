#include "engine/chunk.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "engine/file_io.h"
#include "engine/file_table.h"
#include "engine/output_writer.h"
#include "engine/fp_env.h"
#include "errors.h"


namespace pma {
namespace {

// Elements per block: input blocks of all N checkpoints plus the output block stay in L2.
constexpr size_t kBlockElems = size_t(1) << 15;
constexpr size_t kCopyBytes = size_t(1) << 20;

void grow(std::vector<uint8_t>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

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

void merge_pread(const ChunkSpec& spec, uint32_t op_index, const Op& op, FileTable& in, OutputWriter& out,
                 Scratch& s, ChunkStats& st) {
  const size_t n = op.inputs.size();
  const size_t is = dtype_size(op.in), os = dtype_size(op.out);
  if (s.in.size() < n) s.in.resize(n);
  s.ptrs.resize(n);
  for (size_t k = 0; k < n; ++k) {
    grow(s.in[k], kBlockElems * is);
    s.ptrs[k] = s.in[k].data();
  }
  grow(s.out, kBlockElems * os);
  MergeArgs a = base_args(spec, op);
  a.src = s.ptrs.data();
  a.dst = s.out.data();
  for (uint64_t done = 0; done < op.count;) {
    const size_t m = size_t(std::min<uint64_t>(kBlockElems, op.count - done));
    for (size_t k = 0; k < n; ++k) {
      in.get(op.inputs[k].file).read_at(s.in[k].data(), m * is, op.inputs[k].offset + done * is, op.tensor);
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

void merge_mmap(const ChunkSpec& spec, uint32_t op_index, const Op& op, FileTable& in, OutputWriter& out,
                Scratch& s, ChunkStats& st) {
  const size_t n = op.inputs.size();
  const size_t is = dtype_size(op.in), os = dtype_size(op.out);
  std::vector<Mapping> maps;
  maps.reserve(n);
  std::vector<const uint8_t*> base(n);
  for (size_t k = 0; k < n; ++k) {
    maps.emplace_back(in.get(op.inputs[k].file), op.inputs[k].offset, size_t(op.count * is), op.tensor);
    base[k] = maps.back().data();
  }
  grow(s.out, kBlockElems * os);
  s.ptrs.resize(n);
  MergeArgs a = base_args(spec, op);
  a.src = base.data();
  a.dst = s.out.data();
  for (uint64_t done = 0; done < op.count;) {
    const size_t m = size_t(std::min<uint64_t>(kBlockElems, op.count - done));
    MergeArgs b = advance(a, size_t(done), m, s.ptrs.data());
    b.dst = s.out.data();
    for (size_t k = 0; k < n; ++k) note_nonfinite(st, op_index, uint32_t(k), count_nonfinite(b.src[k], op.in, m));
    merge(spec.kernel, b);
    out.write(op.out_file, op.out_offset + done * os, s.out.data(), m * os, op.tensor);
    st.bytes_read += uint64_t(m * is * n);
    st.bytes_written += uint64_t(m * os);
    done += m;
  }
}

void copy_op(const Op& op, FileTable& in, OutputWriter& out, Scratch& s, ChunkStats& st) {
  grow(s.out, kCopyBytes);
  const File& src = in.get(op.inputs.at(0).file);
  for (uint64_t done = 0; done < op.bytes;) {
    const size_t m = size_t(std::min<uint64_t>(kCopyBytes, op.bytes - done));
    src.read_at(s.out.data(), m, op.inputs[0].offset + done, op.tensor);
    out.write(op.out_file, op.out_offset + done, s.out.data(), m, op.tensor);
    st.bytes_read += m;
    st.bytes_written += m;
    done += m;
  }
}

// The exponent field all ones: infinity or NaN. Plain loops over integers, which g++ vectorises.
template <typename U>
uint64_t count_exp_all_ones(const uint8_t* p, size_t n, U mask) {
  uint64_t c = 0;
  for (size_t j = 0; j < n; ++j) {
    U v;
    std::memcpy(&v, p + j * sizeof(U), sizeof(U));
    c += (v & mask) == mask;
  }
  return c;
}

}  // namespace

uint64_t count_nonfinite(const uint8_t* p, DType t, size_t n) {
  switch (t) {
    case DType::BF16: return count_exp_all_ones<uint16_t>(p, n, 0x7F80u);
    case DType::F16: return count_exp_all_ones<uint16_t>(p, n, 0x7C00u);
    case DType::F32: return count_exp_all_ones<uint32_t>(p, n, 0x7F800000u);
    case DType::F64: return count_exp_all_ones<uint64_t>(p, n, 0x7FF0000000000000ull);
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

void check_ops(const ChunkSpec& spec) {
  for (const Op& op : spec.ops) {
    if (!op.copy && op.inputs.size() != spec.w32.size()) {
      throw EngineError(kCodeInternal, "tensor " + op.tensor + ": " + std::to_string(op.inputs.size()) +
                                           " inputs for " + std::to_string(spec.w32.size()) + " weights",
                        {}, op.tensor);
    }
    if (op.copy && op.inputs.size() != 1) {
      throw EngineError(kCodeInternal, "tensor " + op.tensor + ": a copy needs exactly one input", {}, op.tensor);
    }
  }
}

ChunkStats run_chunk(const ChunkSpec& spec, Scratch& scratch) {
  FpEnvGuard fp;
  FileTable in(spec.inputs, false);
  FileTable out(spec.outputs, true);
  OutputWriter writer(out, spec.direct_write, scratch.direct);
  ChunkStats st;
  check_ops(spec);
  for (uint32_t i = 0; i < spec.ops.size(); ++i) {
    const Op& op = spec.ops[i];
    if (op.copy) {
      copy_op(op, in, writer, scratch, st);
    } else if (spec.io == IoMode::Mmap) {
      merge_mmap(spec, i, op, in, writer, scratch, st);
    } else {
      merge_pread(spec, i, op, in, writer, scratch, st);
    }
    // One writeback request per op, not per block: large requests, few system calls.
    out.get(op.out_file).start_writeback(op.out_offset, out_bytes(op));
    if (spec.drop_cache) {
      for (const InputRange& r : op.inputs) in.get(r.file).drop(r.offset, in_bytes(op));
    }
  }
  writer.flush();
  // Output pages are dropped last: by now most of the chunk's writeback has completed, so the
  // wait is short and the disk stayed busy while the chunk computed.
  if (spec.drop_cache) {
    for (const Op& op : spec.ops) {
      out.get(op.out_file).flush_and_drop(op.out_offset, out_bytes(op));
    }
  }
  return st;
}

}  // namespace pma
