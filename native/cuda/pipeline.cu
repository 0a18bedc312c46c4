// A chunk on the GPU. The calling thread reads pieces of the inputs into pinned staging slots and
// queues copy-in, kernel and copy-out on the slot's own stream; a writer thread waits for each
// slot's event and writes the result. With three slots, reading piece i+1, computing piece i and
// writing piece i-1 overlap, and the device holds at most the slots' bytes.
#include <cuda_runtime.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "cuda/cuda.h"
#include "cuda/runtime.cuh"
#include "engine/file_table.h"
#include "engine/output_writer.h"
#include "errors.h"

namespace pma {
namespace {

constexpr size_t kAlign = 256;      // cudaMalloc's alignment: keeps every input 16-byte aligned
constexpr size_t kMinElems = 1024;  // smallest useful piece of a merge op
constexpr size_t kPieceAlign = 64;  // elements: whole 16-byte words for every dtype

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

struct Slot {
  uint8_t* host = nullptr;  // pinned: n inputs, then the output
  uint8_t* dev = nullptr;   // the same layout on the device
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;
};

// One device's staging slots and weights, for one JS environment.
struct Ring {
  int device = -1;
  int multiprocessors = 1;
  size_t slot_bytes = 0;
  Slot slots[kSlots];
  float* w32 = nullptr;
  double* w64 = nullptr;
  size_t weights = 0;

  ~Ring() { release(); }

  void release() {
    if (device < 0) return;
    cudaSetDevice(device);
    for (Slot& s : slots) {
      if (s.stream) cudaStreamSynchronize(s.stream);
      if (s.done) cudaEventDestroy(s.done);
      if (s.stream) cudaStreamDestroy(s.stream);
      if (s.dev) cudaFree(s.dev);
      if (s.host) cudaFreeHost(s.host);
      s = Slot{};
    }
    if (w32) cudaFree(w32);
    if (w64) cudaFree(w64);
    w32 = nullptr;
    w64 = nullptr;
    weights = 0;
    slot_bytes = 0;
    cudaGetLastError();
  }

  void ensure(int dev, size_t bytes) {
    if (device == dev && slot_bytes == bytes) return;
    release();
    device = dev;
    cuda_check(cudaSetDevice(dev), dev, "selecting the device");
    cuda_check(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, dev), dev,
               "querying the device");
    check_kernel_image(dev);
    for (Slot& s : slots) {
      cuda_check(cudaHostAlloc(reinterpret_cast<void**>(&s.host), bytes, cudaHostAllocPortable), dev,
                 "allocating pinned staging memory (lower --gpu-memory)");
      cuda_check(cudaMalloc(reinterpret_cast<void**>(&s.dev), bytes), dev,
                 "allocating device memory (lower --gpu-memory)");
      cuda_check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), dev, "creating a stream");
      cuda_check(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming | cudaEventBlockingSync), dev,
                 "creating an event");
    }
    slot_bytes = bytes;
  }

  void upload_weights(const ChunkSpec& spec) {
    const size_t n = spec.w32.size();
    if (n > weights) {
      if (w32) cudaFree(w32);
      if (w64) cudaFree(w64);
      w32 = nullptr;
      w64 = nullptr;
      cuda_check(cudaMalloc(reinterpret_cast<void**>(&w32), n * sizeof(float)), device, "allocating weights");
      cuda_check(cudaMalloc(reinterpret_cast<void**>(&w64), n * sizeof(double)), device, "allocating weights");
      weights = n;
    }
    if (n == 0) return;
    // On a slot stream and waited for: the slot streams do not synchronise with the default
    // stream, and a pageable-memory copy may return before the data has landed.
    cudaStream_t s = slots[0].stream;
    cuda_check(cudaMemcpyAsync(w32, spec.w32.data(), n * sizeof(float), cudaMemcpyHostToDevice, s), device,
               "copying weights");
    cuda_check(cudaMemcpyAsync(w64, spec.w64.data(), n * sizeof(double), cudaMemcpyHostToDevice, s), device,
               "copying weights");
    cuda_check(cudaStreamSynchronize(s), device, "copying weights");
  }
};

// A piece of one op that fits a slot: elements [first, first+count) of a merge, or bytes of a copy.
struct Piece {
  size_t op = 0;
  uint64_t first = 0;
  uint64_t count = 0;
  bool last = false;  // the op's final piece
};

// Elements of a merge op per piece: the n inputs and the output, each 256-byte aligned, in a slot.
uint64_t piece_elems(const Op& op, size_t slot_bytes) {
  const size_t n = op.inputs.size();
  const size_t per = n * dtype_size(op.in) + dtype_size(op.out);
  const size_t room = slot_bytes > (n + 1) * kAlign ? slot_bytes - (n + 1) * kAlign : 0;
  return (room / per) / kPieceAlign * kPieceAlign;
}

std::vector<Piece> cut_pieces(const ChunkSpec& spec, size_t slot_bytes) {
  std::vector<Piece> pieces;
  for (size_t i = 0; i < spec.ops.size(); ++i) {
    const Op& op = spec.ops[i];
    if (op.kind == OpKind::Fp8) continue;  // run on the host (run_chunk_cuda)
    const uint64_t total = op.copy() ? op.bytes : op.count;
    const uint64_t step = op.copy() ? slot_bytes : piece_elems(op, slot_bytes);
    if (step < (op.copy() ? 1 : kMinElems) && total > step) {
      const size_t need = kSlots * (kMinElems * (op.inputs.size() * dtype_size(op.in) + dtype_size(op.out)) +
                                    (op.inputs.size() + 1) * kAlign);
      throw EngineError(kCodeNoMem,
                        "--gpu-memory is too small: each worker thread gets " + std::to_string(kSlots * slot_bytes) +
                            " bytes of it, and tensor " + op.tensor + " with " + std::to_string(op.inputs.size()) +
                            " inputs needs at least " + std::to_string(need) +
                            "; raise --gpu-memory or lower --threads",
                        {}, op.tensor);
    }
    if (total == 0) continue;
    for (uint64_t first = 0; first < total; first += step) {
      pieces.push_back(Piece{i, first, std::min(step, total - first), first + step >= total});
    }
  }
  return pieces;
}

struct Queued {
  int slot = 0;
  Piece piece;
  size_t out_at = 0;  // offset of the result in the slot's host buffer
};

// The reader/writer handshake: slots freed by the writer, pieces queued by the reader.
class Handoff {
 public:
  // Waits until slot s is free; false when the writer has failed.
  bool acquire(int s) {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return free_[s] || failed_; });
    if (failed_) return false;
    free_[s] = false;
    return true;
  }
  void release(int s) {
    update([&] { free_[s] = true; });
  }
  void push(const Queued& q) {
    update([&] { queue_.push_back(q); });
  }
  void close() {
    update([&] { closed_ = true; });
  }
  // The next piece, or false once the reader has closed the queue and it is empty.
  bool pop(Queued& q) {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !queue_.empty() || closed_; });
    if (queue_.empty()) return false;
    q = queue_.front();
    queue_.pop_front();
    return true;
  }
  void fail(std::exception_ptr e) {
    update([&] {
      if (!error_) error_ = e;
      failed_ = true;
    });
  }
  std::exception_ptr error() {
    std::lock_guard<std::mutex> l(m_);
    return error_;
  }

 private:
  // Changes the state under the lock, then wakes every waiter.
  template <typename F>
  void update(F&& change) {
    {
      std::lock_guard<std::mutex> l(m_);
      change();
    }
    cv_.notify_all();
  }

  std::mutex m_;
  std::condition_variable cv_;
  bool free_[kSlots] = {true, true, true};
  std::deque<Queued> queue_;
  bool closed_ = false;
  bool failed_ = false;
  std::exception_ptr error_;
};

void write_pieces(const ChunkSpec& spec, Ring& ring, Handoff& h, AlignedBuffer& direct) {
  try {
    cuda_check(cudaSetDevice(ring.device), ring.device, "selecting the device");
    FileTable out(spec.outputs, true);
    OutputWriter writer(out, spec.direct_write, direct);
    Queued q;
    while (h.pop(q)) {
      const Op& op = spec.ops[q.piece.op];
      const Slot& s = ring.slots[q.slot];
      if (!op.copy()) cuda_check(cudaEventSynchronize(s.done), ring.device, "merging", op.tensor);
      const size_t os = op.copy() ? 1 : dtype_size(op.out);
      writer.write(op.out_file, op.out_offset + q.piece.first * os, s.host + q.out_at, size_t(q.piece.count * os),
                   op.tensor);
      if (q.piece.last) writer.completed(op.out_file, op.out_offset, out_bytes(op), op.tensor);
      h.release(q.slot);
    }
    writer.flush();
    if (spec.drop_cache) {
      for (const Op& op : spec.ops) {
        if (op.kind != OpKind::Fp8) out.get(op.out_file).flush_and_drop(op.out_offset, out_bytes(op), op.tensor);
      }
    }
  } catch (...) {
    h.fail(std::current_exception());
  }
}

// Reads piece p into slot s and queues its copy-in, kernel and copy-out; returns bytes read.
uint64_t stage_piece(const ChunkSpec& spec, Ring& ring, FileTable& in, int s, const Piece& p, Queued& q,
                     ChunkStats& st) {
  const Op& op = spec.ops[p.op];
  Slot& slot = ring.slots[s];
  q = Queued{s, p, 0};
  if (op.copy()) {
    in.get(op.inputs[0].file).read_at(slot.host, size_t(p.count), op.inputs[0].offset + p.first, op.tensor);
    return p.count;
  }
  const size_t n = op.inputs.size(), is = dtype_size(op.in);
  const size_t stride = align_up(size_t(p.count) * is, kAlign);
  for (size_t k = 0; k < n; ++k) {
    in.get(op.inputs[k].file)
        .read_at(slot.host + k * stride, size_t(p.count) * is, op.inputs[k].offset + p.first * is, op.tensor);
    note_nonfinite(st, uint32_t(p.op), uint32_t(k), count_nonfinite(slot.host + k * stride, op.in, size_t(p.count)));
  }
  q.out_at = n * stride;
  const int dev = ring.device;
  cuda_check(cudaMemcpyAsync(slot.dev, slot.host, n * stride, cudaMemcpyHostToDevice, slot.stream), dev,
             "copying inputs to the device", op.tensor);
  DeviceMerge m;
  m.src = slot.dev;
  m.stride = stride;
  m.n = int(n);
  m.w32 = ring.w32;
  m.w64 = ring.w64;
  m.acc_f64 = spec.acc_f64;
  m.in = op.in;
  m.out = op.out;
  m.dst = slot.dev + q.out_at;
  m.count = size_t(p.count);
  launch_merge(m, slot.stream, ring.multiprocessors);
  cuda_check(cudaGetLastError(), dev, "launching the merge kernel", op.tensor);
  cuda_check(cudaMemcpyAsync(slot.host + q.out_at, m.dst, size_t(p.count) * dtype_size(op.out), cudaMemcpyDeviceToHost,
                             slot.stream),
             dev, "copying results from the device", op.tensor);
  cuda_check(cudaEventRecord(slot.done, slot.stream), dev, "recording an event", op.tensor);
  return uint64_t(n) * p.count * is;
}

}  // namespace

struct GpuState {
  std::vector<std::unique_ptr<Ring>> rings;
  AlignedBuffer direct;
  Scratch host;  // the CPU engine's buffers, for the FP8 bands

  Ring& ring(int device) {
    for (auto& r : rings) {
      if (r->device == device) return *r;
    }
    rings.push_back(std::make_unique<Ring>());
    return *rings.back();
  }
};

void GpuStateDeleter::operator()(GpuState* s) const { delete s; }
GpuStatePtr gpu_state_new() { return GpuStatePtr(new GpuState); }

ChunkStats run_chunk_cuda(const ChunkSpec& spec, GpuState& state) {
  check_ops(spec);
  if (spec.device < 0) throw EngineError(kCodeInternal, "run_chunk_cuda without a device");
  // The budget covers every slot; each slot holds its inputs and output both pinned and on the device.
  const size_t slot_bytes = std::min(size_t(spec.gpu_memory / kSlots), kMaxSlotBytes) / kAlign * kAlign;
  // The thread's current device may be another GPU (the previous chunk's, or the one cuda_info
  // left): kernels launch on the current device, so set it on every chunk.
  cuda_check(cudaSetDevice(spec.device), spec.device, "selecting the device");
  Ring& ring = state.ring(spec.device);
  ring.ensure(spec.device, slot_bytes);
  ring.upload_weights(spec);
  const std::vector<Piece> pieces = cut_pieces(spec, slot_bytes);

  ChunkStats st;
  // FP8 bands run on the host with the CPU engine's code (docs/gpu.md): the same bytes as every
  // CPU kernel, before the GPU pieces, which write other ranges.
  run_ops_on_cpu(
      spec, state.host, [](const Op& op) { return op.kind == OpKind::Fp8; }, st);
  Handoff h;
  std::thread writer(write_pieces, std::cref(spec), std::ref(ring), std::ref(h), std::ref(state.direct));
  std::exception_ptr reader_error;
  try {
    FileTable in(spec.inputs, false);
    for (size_t i = 0; i < pieces.size(); ++i) {
      const int s = int(i % kSlots);
      check_cancel(spec.cancel, spec.ops[pieces[i].op]);
      if (!h.acquire(s)) break;
      Queued q;
      st.bytes_read += stage_piece(spec, ring, in, s, pieces[i], q, st);
      h.push(q);
      const Op& op = spec.ops[pieces[i].op];
      st.bytes_written += pieces[i].count * (op.copy() ? 1 : dtype_size(op.out));
      if (spec.drop_cache && pieces[i].last) {
        for (const InputRange& r : op.inputs) in.get(r.file).drop(r.offset, in_bytes(op));
      }
    }
  } catch (...) {
    reader_error = std::current_exception();
  }
  h.close();
  writer.join();
  // Nothing may still be copying into the pinned buffers when they are reused or freed.
  for (Slot& s : ring.slots) cudaStreamSynchronize(s.stream);
  if (reader_error) std::rethrow_exception(reader_error);
  if (std::exception_ptr e = h.error()) std::rethrow_exception(e);
  return st;
}

}  // namespace pma
