// The export table and the JS <-> C++ boundary. Everything the engine needs is copied out of the
// JS values here, on the calling thread, into plain structs; the engine and kernels never see napi.
#include <napi.h>

#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/cuda.h"
#include "engine/analyze.h"
#include "engine/chunk.h"
#include "engine/chunk_threads.h"
#include "engine/direct_writes.h"
#include "engine/file_io.h"
#include "engine/fp_env.h"
#include "engine/output_hash.h"
#include "engine/stopwatch.h"
#include "errors.h"
#include "kernels/crc32.h"
#include "kernels/kernels.h"

namespace {

using pma::DType;
using pma::Kernel;

// The shapes of the arguments are pma's own contract with src/native.ts: a wrong one is a bug in
// pma, never user input, so every shape error is kCodeInternal.
[[noreturn]] void bad_arg(const char* key, const char* what) {
  throw pma::EngineError(pma::kCodeInternal, std::string("native: '") + key + "' must be " + what);
}

std::string as_string(const Napi::Value& v, const char* key) {
  if (!v.IsString()) bad_arg(key, "a string");
  return v.As<Napi::String>().Utf8Value();
}

double as_number(const Napi::Value& v, const char* key) {
  if (!v.IsNumber()) bad_arg(key, "a number");
  return v.As<Napi::Number>().DoubleValue();
}

uint64_t as_u64(const Napi::Value& v, const char* key) {
  const double d = as_number(v, key);
  if (!(d >= 0 && d <= 9007199254740991.0) || d != double(uint64_t(d))) bad_arg(key, "a safe integer");
  return uint64_t(d);
}

Napi::Object as_object(const Napi::Value& v, const char* key) {
  if (!v.IsObject()) bad_arg(key, "an object");
  return v.As<Napi::Object>();
}

Napi::Array as_array(const Napi::Value& v, const char* key) {
  if (!v.IsArray()) bad_arg(key, "an array");
  return v.As<Napi::Array>();
}

std::string get_string(const Napi::Object& o, const char* key) { return as_string(o.Get(key), key); }

pma::Checksum checksum_arg(const Napi::Object& o) {
  pma::Checksum c;
  if (!pma::parse_checksum(get_string(o, "checksum"), &c)) bad_arg("checksum", "'blake3' or 'sha256'");
  return c;
}
double get_number(const Napi::Object& o, const char* key) { return as_number(o.Get(key), key); }
uint64_t get_u64(const Napi::Object& o, const char* key) { return as_u64(o.Get(key), key); }
Napi::Array get_array(const Napi::Object& o, const char* key) { return as_array(o.Get(key), key); }

std::vector<std::string> get_strings(const Napi::Object& o, const char* key) {
  const Napi::Array a = get_array(o, key);
  std::vector<std::string> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) out[i] = as_string(a.Get(i), key);
  return out;
}

DType parse_dtype(const std::string& s) {
  if (s == "BF16") return DType::BF16;
  if (s == "F16") return DType::F16;
  if (s == "F32") return DType::F32;
  if (s == "F64") return DType::F64;
  throw pma::EngineError(pma::kCodeInternal, "native: no arithmetic for dtype " + s);
}

Kernel parse_kernel(const std::string& s) {
  Kernel k = Kernel::Scalar;
  if (s == "auto") return pma::best_kernel();
  if (s == "avx2") k = Kernel::Avx2;
  else if (s == "avx512") k = Kernel::Avx512;
  else if (s != "scalar") throw pma::EngineError(pma::kCodeInternal, "native: unknown kernel " + s);
  if (!pma::kernel_available(k)) {
    throw pma::EngineError(pma::kCodeUnsupported, std::string("kernel ") + s + " is not supported by this CPU");
  }
  return k;
}

void read_weights(const Napi::Object& o, std::vector<float>& w32, std::vector<double>& w64) {
  // Both come from TS: w32 is the f32 rounding of the normalised f64 weights (golden rule 1).
  const Napi::Array a32 = get_array(o, "weights32");
  const Napi::Array a64 = get_array(o, "weights64");
  if (a32.Length() != a64.Length()) {
    throw pma::EngineError(pma::kCodeInternal, "native: weight arrays differ in length");
  }
  for (uint32_t i = 0; i < a32.Length(); ++i) {
    w32.push_back(float(as_number(a32.Get(i), "weights32")));
    w64.push_back(as_number(a64.Get(i), "weights64"));
  }
}

pma::Fp8 parse_fp8(const std::string& s) {
  if (s == "F8_E4M3") return pma::Fp8::E4M3;
  if (s == "F8_E5M2") return pma::Fp8::E5M2;
  throw pma::EngineError(pma::kCodeInternal, "native: no FP8 arithmetic for dtype " + s);
}

std::vector<pma::InputRange> parse_ranges(const Napi::Object& o, const char* key) {
  const Napi::Array a = get_array(o, key);
  std::vector<pma::InputRange> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    const Napi::Object r = as_object(a.Get(k), key);
    out[k].file = uint32_t(get_u64(r, "file"));
    out[k].offset = get_u64(r, "offset");
  }
  return out;
}

// The band of an 'fp8' op (src/plan/types.ts PlanFp8Op).
void parse_fp8_band(const Napi::Object& o, pma::Op& op) {
  pma::Fp8Band& b = op.fp8;
  b.in = parse_fp8(get_string(o, "inDtype"));
  const std::string out = get_string(o, "outDtype");
  b.requantise = out.rfind("F8_", 0) == 0;
  if (b.requantise && parse_fp8(out) != b.in) bad_arg("outDtype", "the input's FP8 format or a float dtype");
  if (!b.requantise) op.out = parse_dtype(out);
  b.rows = get_u64(o, "rows");
  b.cols = get_u64(o, "cols");
  b.row0 = get_u64(o, "row0");
  b.block_rows = get_u64(o, "blockRows");
  b.block_cols = get_u64(o, "blockCols");
  const Napi::Value scale = o.Get("scale");
  b.scaled = !scale.IsNull();
  if (!b.scaled) return;
  const Napi::Object sc = as_object(scale, "scale");
  b.scale = parse_dtype(get_string(sc, "dtype"));
  b.scales = parse_ranges(sc, "inputs");
  if (b.requantise) {
    const Napi::Object dst = as_object(sc.Get("out"), "scale.out");
    b.scale_out_file = uint32_t(get_u64(dst, "file"));
    b.scale_out_offset = get_u64(dst, "offset");
  }
}

std::vector<pma::Op> parse_ops(const Napi::Object& t) {
  const Napi::Array ops = get_array(t, "ops");
  std::vector<pma::Op> out(ops.Length());
  for (uint32_t i = 0; i < ops.Length(); ++i) {
    const Napi::Object o = as_object(ops.Get(i), "ops");
    pma::Op& op = out[i];
    const std::string kind = get_string(o, "kind");
    op.tensor = get_string(o, "tensor");
    op.out_file = uint32_t(get_u64(o, "outFile"));
    op.out_offset = get_u64(o, "outOffset");
    if (kind == "copy") {
      op.kind = pma::OpKind::Copy;
      op.bytes = get_u64(o, "bytes");
    } else if (kind == "fp8") {
      op.kind = pma::OpKind::Fp8;
      parse_fp8_band(o, op);
    } else if (kind == "merge") {
      op.in = parse_dtype(get_string(o, "inDtype"));
      op.out = parse_dtype(get_string(o, "outDtype"));
      op.count = get_u64(o, "count");
    } else {
      bad_arg("kind", "'merge', 'copy' or 'fp8'");
    }
    op.inputs = parse_ranges(o, "inputs");
  }
  return out;
}

// An Int32Array over a SharedArrayBuffer the executor owns; the JS value outlives the call.
// Absent: the chunk cannot be stopped.
const int32_t* parse_cancel(const Napi::Object& t) {
  const Napi::Value cancel = t.Get("cancel");
  if (cancel.IsUndefined() || cancel.IsNull()) return nullptr;
  if (!cancel.IsTypedArray() || cancel.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      cancel.As<Napi::TypedArray>().ElementLength() < 1) {
    bad_arg("cancel", "an Int32Array of at least one element");
  }
  return cancel.As<Napi::Int32Array>().Data();
}

// What analyzeChunk reads of a chunk: nothing else is looked at.
pma::ChunkReads parse_reads(const Napi::Object& t) {
  pma::ChunkReads r;
  r.inputs = get_strings(t, "inputs");
  r.ops = parse_ops(t);
  r.cancel = parse_cancel(t);
  return r;
}

// The whole merge chunk, for runChunk.
pma::ChunkSpec parse_chunk(const Napi::Object& t) {
  pma::ChunkSpec spec;
  static_cast<pma::ChunkReads&>(spec) = parse_reads(t);
  spec.outputs = get_strings(t, "outputs");
  read_weights(t, spec.w32, spec.w64);
  spec.acc_f64 = get_string(t, "accumulate") == "f64";
  spec.kernel = parse_kernel(get_string(t, "kernel"));
  spec.io = get_string(t, "io") == "mmap" ? pma::IoMode::Mmap : pma::IoMode::Pread;
  spec.drop_cache = t.Get("dropCache").ToBoolean().Value();
  spec.direct_write = get_string(t, "write") == "direct";
  const double device = get_number(t, "device");
  spec.device = device >= 0 ? int(device) : -1;
  if (spec.device >= 0) spec.gpu_memory = get_u64(t, "gpuMemory");
  return spec;
}

Napi::Error js_error(Napi::Env env, const pma::EngineError& e) {
  Napi::Error err = Napi::Error::New(env, e.what());
  err.Set("pmaCode", Napi::String::New(env, e.code));
  if (!e.file.empty()) err.Set("file", Napi::String::New(env, e.file));
  if (!e.tensor.empty()) err.Set("tensor", Napi::String::New(env, e.tensor));
  return err;
}

// What a C++ exception becomes at the boundary, on any thread: an EngineError as it is, a failed
// allocation kCodeNoMem, any other exception kCodeInternal.
pma::EngineError engine_error(std::exception_ptr p) {
  try {
    std::rethrow_exception(p);
  } catch (const pma::EngineError& e) {
    return e;
  } catch (const std::bad_alloc&) {
    return pma::EngineError(pma::kCodeNoMem, "out of memory in the native engine");
  } catch (const std::exception& e) {
    return pma::EngineError(pma::kCodeInternal, std::string("native engine: ") + e.what());
  } catch (...) {
    return pma::EngineError(pma::kCodeInternal, "native engine: an exception of unknown type");
  }
}

// The one guard around every exported method (see PmaAddon::Exported): a C++ exception becomes a
// JS error carrying pmaCode, file and tensor (engine_error). A Napi::Error (a JS exception
// already raised, e.g. by a getter of an argument) passes through unchanged.
template <typename F>
Napi::Value guarded(Napi::Env env, F&& f) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw js_error(env, engine_error(std::current_exception()));
  }
}

Napi::Value stats_value(Napi::Env env, const pma::ChunkStats& st, uint64_t engine_ns) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("bytesRead", double(st.bytes_read));
  o.Set("bytesWritten", double(st.bytes_written));
  Napi::Object t = Napi::Object::New(env);
  t.Set("engine", double(engine_ns) / 1e9);
  t.Set("read", double(st.read_ns) / 1e9);
  t.Set("scan", double(st.scan_ns) / 1e9);
  t.Set("write", double(st.write_ns) / 1e9);
  o.Set("seconds", t);
  Napi::Array nf = Napi::Array::New(env, st.nonfinite.size());
  for (size_t i = 0; i < st.nonfinite.size(); ++i) {
    Napi::Array x = Napi::Array::New(env, 3);
    x.Set(uint32_t(0), st.nonfinite[i].op);
    x.Set(uint32_t(1), st.nonfinite[i].input);
    x.Set(uint32_t(2), double(st.nonfinite[i].count));
    nf.Set(uint32_t(i), x);
  }
  o.Set("nonfinite", nf);
  return o;
}

Napi::Value moments_value(Napi::Env env, const std::vector<pma::OpMoments>& ms) {
  Napi::Array out = Napi::Array::New(env, ms.size());
  for (size_t i = 0; i < ms.size(); ++i) {
    const pma::OpMoments& m = ms[i];
    Napi::Object o = Napi::Object::New(env);
    Napi::Array gram = Napi::Array::New(env, m.gram.size());
    for (size_t k = 0; k < m.gram.size(); ++k) gram.Set(uint32_t(k), m.gram[k]);
    Napi::Array cross = Napi::Array::New(env, m.cross.size());
    for (size_t k = 0; k < m.cross.size(); ++k) cross.Set(uint32_t(k), m.cross[k]);
    o.Set("gram", gram);
    o.Set("cross", cross);
    o.Set("newestSq", m.newest_sq);
    o.Set("count", double(m.count));
    out.Set(uint32_t(i), o);
  }
  return out;
}

// One chunk handed to the chunk threads: parsed on the JS thread, run on a chunk thread, settled
// (its promise resolved or rejected) back on the JS thread once the thread is done with it and the
// writes it handed to the writer threads (direct_writes.h) are finished.
class Job : public pma::WriteTicket {
 public:
  Job(Napi::Env env, const Napi::Object& chunk) : deferred_(Napi::Promise::Deferred::New(env)) {
    // The cancel flag's buffer stays alive while the job runs, whatever the caller drops.
    const Napi::Value cancel = chunk.Get("cancel");
    if (cancel.IsObject()) cancel_ = Napi::Persistent(cancel.As<Napi::Object>());
  }
  virtual ~Job() = default;

  Napi::Promise promise() const { return deferred_.Promise(); }

  // Called (on a chunk thread, or a writer thread) when the job can be settled.
  void when_done(std::function<void()> f) { when_done_ = std::move(f); }

  // On a chunk thread.
  void run(pma::ThreadState& state) {
    try {
      execute(state);
    } catch (...) {
      fail(std::current_exception());
    }
    release();
  }

  // WriteTicket: a write queued, and finished (on a writer thread).
  void add() override { pending_.fetch_add(1, std::memory_order_relaxed); }
  void done(std::exception_ptr error) override {
    if (error) fail(error);
    release();
  }

  // On the JS thread.
  void settle(Napi::Env env) {
    Napi::HandleScope scope(env);
    if (failed_) {
      deferred_.Reject(js_error(env, error_).Value());
      return;
    }
    try {
      deferred_.Resolve(value(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 protected:
  virtual void execute(pma::ThreadState& state) = 0;
  virtual Napi::Value value(Napi::Env env) = 0;

 private:
  // The first failure wins: the chunk's own, or a write's.
  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_) return;
    failed_ = true;
    error_ = engine_error(e);
  }
  void release() {
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) when_done_();
  }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference cancel_;
  std::function<void()> when_done_;
  std::atomic<int> pending_{1};  // the chunk thread's part, and each write in flight
  std::mutex mu_;
  bool failed_ = false;
  pma::EngineError error_{"", ""};
};

class MergeJob : public Job {
 public:
  MergeJob(Napi::Env env, const Napi::Object& chunk, std::vector<int> gpus, pma::DirectWrites* writes)
      : Job(env, chunk), spec_(parse_chunk(chunk)), gpus_(std::move(gpus)), writes_(writes) {}

 private:
  void execute(pma::ThreadState& state) override {
    // On GPUs each thread merges on one of them, always the same, so that its pinned staging is
    // held once.
    if (!gpus_.empty()) spec_.device = gpus_[size_t(state.index) % gpus_.size()];
    if (spec_.direct_write && spec_.device < 0) {
      spec_.writes = writes_;
      spec_.ticket = this;
    }
    const uint64_t t0 = pma::now_ns();
    stats_ = spec_.device >= 0 ? pma::run_chunk_cuda(spec_, state.gpu_state()) : pma::run_chunk(spec_, state.scratch);
    engine_ns_ = pma::now_ns() - t0;
  }
  Napi::Value value(Napi::Env env) override { return stats_value(env, stats_, engine_ns_); }

  pma::ChunkSpec spec_;
  std::vector<int> gpus_;
  pma::DirectWrites* writes_;
  pma::ChunkStats stats_;
  uint64_t engine_ns_ = 0;
};

class AnalyzeJob : public Job {
 public:
  AnalyzeJob(Napi::Env env, const Napi::Object& chunk)
      : Job(env, chunk), reads_(parse_reads(chunk)), kernel_(parse_kernel(get_string(chunk, "kernel"))) {}

 private:
  void execute(pma::ThreadState& state) override { moments_ = pma::analyze_chunk(reads_, kernel_, state.analyze); }
  Napi::Value value(Napi::Env env) override { return moments_value(env, moments_); }

  pma::ChunkReads reads_;
  Kernel kernel_;
  std::vector<pma::OpMoments> moments_;
};

// One request of the output hasher (src/output/hash-threads.ts FileOp, or a whole file): parsed on
// the JS thread, run on a chunk thread. Requests about one file come one at a time.
class HashJob : public Job {
 public:
  HashJob(Napi::Env env, const Napi::Object& r, std::shared_ptr<pma::OutputFileHash> file, pma::DirectWrites* held)
      : Job(env, r), op_(get_string(r, "op")), file_(std::move(file)), held_(held) {
    if (op_ == "update") {
      from_ = get_u64(r, "from");
      to_ = get_u64(r, "to");
      drop_ = r.Get("drop").ToBoolean().Value();
      const Napi::Array a = get_array(r, "crcs");
      for (uint32_t i = 0; i < a.Length(); ++i) {
        const Napi::Object m = as_object(a.Get(i), "crcs");
        crcs_.push_back({get_u64(m, "start"), get_u64(m, "end"), uint32_t(get_u64(m, "crc"))});
      }
    } else if (op_ == "crc") {
      from_ = get_u64(r, "start");
      to_ = get_u64(r, "end");
    } else if (op_ == "put") {
      from_ = get_u64(r, "at");
      value_ = uint32_t(get_u64(r, "value"));
    } else if (op_ == "file") {
      path_ = get_string(r, "path");
      checksum_ = checksum_arg(r);
    } else if (op_ != "digest") {
      bad_arg("op", "'update', 'crc', 'put', 'digest' or 'file'");
    }
    if (op_ != "file" && !file_) bad_arg("file", "a file number");
  }

 private:
  void execute(pma::ThreadState& state) override {
    if (op_ == "update") {
      seconds_ = file_->update(from_, to_, crcs_, drop_, state.hash_block, held_);
    } else if (op_ == "crc") {
      value_ = file_->crc(from_, to_, state.hash_block);
    } else if (op_ == "put") {
      file_->put(from_, value_);
    } else if (op_ == "digest") {
      hex_ = file_->digest(held_);
    } else {
      hex_ = pma::hash_file(path_, checksum_, state.hash_block);
    }
  }

  Napi::Value value(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    if (op_ == "update") {
      o.Set("read", double(seconds_.read_ns) / 1e9);
      o.Set("update", double(seconds_.update_ns) / 1e9);
      Napi::Array a = Napi::Array::New(env, crcs_.size());
      for (size_t i = 0; i < crcs_.size(); ++i) a.Set(uint32_t(i), crcs_[i].crc);
      o.Set("crcs", a);
    } else if (op_ == "crc") {
      o.Set("crc", value_);
    } else if (op_ == "digest" || op_ == "file") {
      o.Set("hex", hex_);
    }
    return o;
  }

  std::string op_;
  std::shared_ptr<pma::OutputFileHash> file_;
  pma::DirectWrites* held_;
  std::string path_;
  pma::Checksum checksum_ = pma::Checksum::Blake3;
  uint64_t from_ = 0, to_ = 0;
  bool drop_ = false;
  uint32_t value_ = 0;
  std::vector<pma::MemberCrc> crcs_;
  pma::HashSeconds seconds_;
  std::string hex_;
};

// `new addon.Threads(count, hashOnly)`: the threads of one merge or analysis (src/run/pool.ts),
// and `hashOnly` more that only hash. Each call queues a chunk (or a hash request, ahead of the
// chunks) and returns a promise of its result. The threads hold the process open
// only while chunks are in flight; close() waits for those queued and ends the threads.
class Threads : public Napi::ObjectWrap<Threads> {
 public:
  static Napi::Function Class(Napi::Env env) {
    return DefineClass(env, "Threads",
                       {
                           InstanceMethod<&Threads::Guarded<&Threads::RunChunk>>("runChunk"),
                           InstanceMethod<&Threads::Guarded<&Threads::AnalyzeChunk>>("analyzeChunk"),
                           InstanceMethod<&Threads::Guarded<&Threads::Hash>>("hash"),
                           InstanceMethod<&Threads::Guarded<&Threads::ForgetHashes>>("forgetHashes"),
                           InstanceMethod<&Threads::Guarded<&Threads::DiskBusy>>("diskBusy"),
                           InstanceMethod<&Threads::Guarded<&Threads::Close>>("close"),
                       });
  }

  explicit Threads(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Threads>(info) {
    guarded(info.Env(), [&]() -> Napi::Value {
      const uint64_t count = as_u64(info[0], "count");
      if (count < 1 || count > 1024) bad_arg("count", "1 to 1024");
      const uint64_t hash_only = info[1].IsUndefined() ? 0 : as_u64(info[1], "hashOnly");
      if (hash_only > 64) bad_arg("hashOnly", "0 to 64");
      const Napi::Function none = Napi::Function::New(info.Env(), [](const Napi::CallbackInfo&) {});
      flight_ = std::make_shared<Flight>();
      flight_->done = Napi::ThreadSafeFunction::New(info.Env(), none, "pma chunk threads", 0, 1);
      flight_->done.Unref(info.Env());
      writes_ = std::make_unique<pma::DirectWrites>();
      threads_ = std::make_unique<pma::ChunkThreads>(int(count), int(hash_only));
      return info.Env().Undefined();
    });
  }

  ~Threads() override { stop(); }

 private:
  // What the settling callbacks share with the object, which the GC may free before they run.
  struct Flight {
    Napi::ThreadSafeFunction done;
    uint32_t in_flight = 0;
    bool released = false;
  };

  using Method = Napi::Value (Threads::*)(const Napi::CallbackInfo&);
  template <Method M>
  Napi::Value Guarded(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return (this->*M)(info); });
  }

  Napi::Value RunChunk(const Napi::CallbackInfo& info) {
    std::vector<int> gpus;
    const Napi::Array a = as_array(info[1], "gpus");
    for (uint32_t i = 0; i < a.Length(); ++i) gpus.push_back(int(as_u64(a.Get(i), "gpus")));
    return submit(info.Env(),
                  std::make_unique<MergeJob>(info.Env(), as_object(info[0], "chunk"), std::move(gpus), writes_.get()));
  }

  Napi::Value AnalyzeChunk(const Napi::CallbackInfo& info) {
    return submit(info.Env(), std::make_unique<AnalyzeJob>(info.Env(), as_object(info[0], "chunk")));
  }

  // A request of the output hasher: `file` numbers the file (its state lives here from its first
  // request to its digest), or op 'file' hashes a whole file by path.
  Napi::Value Hash(const Napi::CallbackInfo& info) {
    const Napi::Object r = as_object(info[0], "request");
    const std::string op = get_string(r, "op");
    std::shared_ptr<pma::OutputFileHash> file;
    if (op != "file") {
      const uint64_t id = get_u64(r, "file");
      auto it = hashes_.find(id);
      if (it == hashes_.end()) {
        const bool writable = r.Get("writable").ToBoolean().Value();
        it =
            hashes_.emplace(id, std::make_shared<pma::OutputFileHash>(get_string(r, "path"), writable, checksum_arg(r)))
                .first;
      }
      file = it->second;
      if (op == "digest") hashes_.erase(it);  // the job keeps it to the end; the number is free again
    }
    return submit(info.Env(), std::make_unique<HashJob>(info.Env(), r, std::move(file), writes_.get()),
                  /* urgent */ true);
  }

  // Forgets every file being hashed (their requests have all settled): closes them.
  Napi::Value ForgetHashes(const Napi::CallbackInfo& info) {
    hashes_.clear();
    if (writes_) writes_->forget_all();
    return info.Env().Undefined();
  }

  // How busy the direct writes kept the disk so far: seconds with a write in flight, bytes.
  Napi::Value DiskBusy(const Napi::CallbackInfo& info) {
    const pma::DirectWrites::Busy b = writes_ ? writes_->busy() : pma::DirectWrites::Busy{};
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("seconds", double(b.ns) / 1e9);
    o.Set("bytes", double(b.bytes));
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    stop();
    return info.Env().Undefined();
  }

  Napi::Value submit(Napi::Env env, std::unique_ptr<Job> owned, bool urgent = false) {
    if (!threads_) throw pma::EngineError(pma::kCodeInternal, "native: the chunk threads are closed");
    const Napi::Promise promise = owned->promise();
    if (flight_->in_flight++ == 0) flight_->done.Ref(env);
    std::shared_ptr<Flight> flight = flight_;
    Job* job = owned.release();
    job->when_done([flight, job] {
      // The queue is unbounded, so this never blocks: no engine thread waits for the JS thread.
      // It fails only while the environment closes, when nothing is left to settle; the job is
      // then left alone (its JS references may be released on the JS thread only).
      const napi_status queued = flight->done.BlockingCall(job, [flight](Napi::Env env, Napi::Function, Job* job) {
        std::unique_ptr<Job> settled(job);
        settled->settle(env);
        if (--flight->in_flight == 0 && !flight->released) flight->done.Unref(env);
      });
      (void)queued;
    });
    threads_->submit([job](pma::ThreadState& state) { job->run(state); }, urgent);
    return promise;
  }

  void stop() {
    if (!threads_) return;
    threads_->join();
    threads_.reset();
    writes_.reset();  // after the chunk threads, which queue writes: waits for the writes queued
    flight_->released = true;
    flight_->done.Release();
  }

  std::shared_ptr<Flight> flight_;
  std::unique_ptr<pma::DirectWrites> writes_;
  std::unique_ptr<pma::ChunkThreads> threads_;
  std::unordered_map<uint64_t, std::shared_ptr<pma::OutputFileHash>> hashes_;
};

// One instance per JS environment (main thread or worker): napi keeps it as the env's instance
// data and deletes it in the env's cleanup, so scratch buffers die with their thread.
class PmaAddon : public Napi::Addon<PmaAddon> {
 public:
  PmaAddon(Napi::Env env, Napi::Object exports) {
    DefineAddon(exports, {
                             Exported<&PmaAddon::CpuFeatures>("cpuFeatures"),
                             Exported<&PmaAddon::RunChunk>("runChunk"),
                             Exported<&PmaAddon::AnalyzeChunk>("analyzeChunk"),
                             Exported<&PmaAddon::MergeBuffers>("mergeBuffers"),
                             Exported<&PmaAddon::CudaInfo>("cudaInfo"),
                             Exported<&PmaAddon::DropCache>("dropCache"),
                             Exported<&PmaAddon::Preallocate>("preallocate"),
                             Exported<&PmaAddon::Crc32>("crc32"),
                             Exported<&PmaAddon::Blake3>("blake3"),
                             Exported<&PmaAddon::CountNonfinite>("countNonfinite"),
                             Exported<&PmaAddon::CudaBench>("cudaBench"),
                         });
    exports.Set("cuda", Napi::Boolean::New(env, pma::cuda_built()));
    exports.Set("Threads", Threads::Class(env));
  }

 private:
  using Method = Napi::Value (PmaAddon::*)(const Napi::CallbackInfo&);

  // Every method is exported through guarded(), so none can let a C++ exception escape or
  // report a failure without its code.
  template <Method M>
  Napi::Value Guarded(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return (this->*M)(info); });
  }

  template <Method M>
  static PropertyDescriptor Exported(const char* name) {
    return InstanceMethod(name, &PmaAddon::Guarded<M>);
  }

  Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const pma::CpuFeatures f = pma::cpu_features();
    Napi::Object o = Napi::Object::New(env);
    o.Set("avx2", f.avx2 && f.fma && f.f16c);
    o.Set("avx512", f.avx512f && f.avx512bw && f.avx512vl);
    Napi::Array ks = Napi::Array::New(env);
    uint32_t n = 0;
    for (Kernel k : {Kernel::Scalar, Kernel::Avx2, Kernel::Avx512}) {
      if (pma::kernel_available(k)) ks.Set(n++, pma::kernel_name(k));
    }
    o.Set("kernels", ks);
    o.Set("best", pma::kernel_name(pma::best_kernel()));
    return o;
  }

  Napi::Value RunChunk(const Napi::CallbackInfo& info) {
    const pma::ChunkSpec spec = parse_chunk(as_object(info[0], "chunk"));
    const uint64_t t0 = pma::now_ns();
    const pma::ChunkStats st = spec.device >= 0 ? pma::run_chunk_cuda(spec, gpu()) : pma::run_chunk(spec, scratch_);
    return stats_value(info.Env(), st, pma::now_ns() - t0);
  }

  // Reads only the chunk's inputs, ops and cancel flag (parse_reads) and the kernel: no outputs,
  // weights or merge settings are needed to analyse.
  Napi::Value AnalyzeChunk(const Napi::CallbackInfo& info) {
    const Napi::Object t = as_object(info[0], "chunk");
    const pma::ChunkReads reads = parse_reads(t);  // first: argument errors in the order of the fields
    return moments_value(info.Env(),
                         pma::analyze_chunk(reads, parse_kernel(get_string(t, "kernel")), analyze_scratch_));
  }

  // Runs one kernel over in-memory buffers: the test hook for comparing backends.
  Napi::Value MergeBuffers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Napi::Object t = as_object(info[0], "args");
    const DType in = parse_dtype(get_string(t, "inDtype"));
    const DType out = parse_dtype(get_string(t, "outDtype"));
    const double device = get_number(t, "device");
    const Kernel k = device >= 0 ? Kernel::Scalar : parse_kernel(get_string(t, "kernel"));
    std::vector<float> w32;
    std::vector<double> w64;
    read_weights(t, w32, w64);
    const Napi::Array bufs = get_array(t, "inputs");
    if (bufs.Length() != w32.size()) throw pma::EngineError(pma::kCodeInternal, "native: one input per weight");
    std::vector<const uint8_t*> src(bufs.Length());
    size_t count = 0;
    for (uint32_t i = 0; i < bufs.Length(); ++i) {
      const Napi::Value v = bufs.Get(i);
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        bad_arg("inputs", "an array of Uint8Arrays");
      }
      const Napi::Uint8Array b = v.As<Napi::Uint8Array>();
      const size_t c = b.ByteLength() / pma::dtype_size(in);
      if (i == 0) count = c;
      if (c != count || b.ByteLength() % pma::dtype_size(in) != 0) {
        throw pma::EngineError(pma::kCodeInternal, "native: input buffers differ in length");
      }
      src[i] = b.Data();
    }
    Napi::Uint8Array dst = Napi::Uint8Array::New(env, count * pma::dtype_size(out));
    pma::MergeArgs a{};
    a.src = src.data();
    a.n = int(src.size());
    a.w32 = w32.data();
    a.w64 = w64.data();
    a.acc_f64 = get_string(t, "accumulate") == "f64";
    a.in = in;
    a.out = out;
    a.count = count;
    a.dst = dst.Data();
    if (device >= 0) {
      pma::merge_cuda(int(device), a);
    } else {
      pma::FpEnvGuard fp;
      pma::merge(k, a);
    }
    return dst;
  }

  // Drops [offset, offset+length) of a file from the page cache (a hint; used after hashing an
  // output of a merge that keeps the page cache clean).
  Napi::Value DropCache(const Napi::CallbackInfo& info) {
    const pma::File f(as_string(info[0], "path"), false);
    f.drop(as_u64(info[1], "offset"), as_u64(info[2], "length"));
    return info.Env().Undefined();
  }

  // Allocates the first `length` bytes of an existing file (File::preallocate): false where its
  // filesystem cannot.
  Napi::Value Preallocate(const Napi::CallbackInfo& info) {
    const pma::File f(as_string(info[0], "path"), true);
    return Napi::Boolean::New(info.Env(), f.preallocate(as_u64(info[1], "length")));
  }

  // CRC-32 (zip's, as zlib computes it) of a Uint8Array, continuing from a CRC-32 (0 to start).
  Napi::Value Crc32(const Napi::CallbackInfo& info) {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      bad_arg("bytes", "a Uint8Array");
    }
    const Napi::Uint8Array b = info[0].As<Napi::Uint8Array>();
    const uint64_t crc = as_u64(info[1], "crc");
    if (crc > 0xffffffffu) bad_arg("crc", "a CRC-32 (0 to 2^32 - 1)");
    return Napi::Number::New(info.Env(), pma::crc32(uint32_t(crc), b.Data(), b.ElementLength()));
  }

  // The BLAKE3 digest (hex) of a Uint8Array, its whole chunks hashed by the SIMD path of a kernel
  // ("auto": the best this CPU has): the hash threads' BLAKE3, for tests of each path.
  Napi::Value Blake3(const Napi::CallbackInfo& info) {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      bad_arg("bytes", "a Uint8Array");
    }
    const Napi::Uint8Array b = info[0].As<Napi::Uint8Array>();
    pma::Blake3 h(parse_kernel(as_string(info[1], "kernel")));
    h.update(b.Data(), b.ElementLength());
    return Napi::String::New(info.Env(), h.hex());
  }

  // The merge's NaN/Inf count (engine/chunk.cc) over values of one dtype: how a finding in an op
  // that covers several tensors is told apart tensor by tensor (src/merge/nonfinite.ts).
  Napi::Value CountNonfinite(const Napi::CallbackInfo& info) {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      bad_arg("bytes", "a Uint8Array");
    }
    const Napi::Uint8Array b = info[0].As<Napi::Uint8Array>();
    const DType t = parse_dtype(as_string(info[1], "dtype"));
    const size_t width = pma::dtype_size(t);
    if (b.ElementLength() % width != 0) bad_arg("bytes", "a whole number of values of the dtype");
    return Napi::Number::New(info.Env(), double(pma::count_nonfinite(b.Data(), t, b.ElementLength() / width)));
  }

  Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const pma::CudaInfo c = pma::cuda_info();
    Napi::Object o = Napi::Object::New(env);
    o.Set("built", c.built);
    o.Set("archs", c.archs);
    o.Set("runtimeVersion", c.runtime_version);
    o.Set("driverVersion", c.driver_version);
    if (!c.driver_release.empty()) o.Set("driverRelease", c.driver_release);
    o.Set("stagingSlots", pma::kSlots);
    o.Set("maxSlotBytes", double(pma::kMaxSlotBytes));
    if (!c.error.empty()) o.Set("error", c.error);
    Napi::Array ds = Napi::Array::New(env, c.devices.size());
    for (size_t i = 0; i < c.devices.size(); ++i) {
      const pma::GpuDevice& d = c.devices[i];
      Napi::Object x = Napi::Object::New(env);
      x.Set("index", d.index);
      x.Set("name", d.name);
      x.Set("pciBusId", d.pci_bus_id);
      x.Set("computeCapability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor));
      x.Set("multiprocessors", d.multiprocessors);
      x.Set("totalMemory", double(d.total_memory));
      if (d.free_memory > 0) x.Set("freeMemory", double(d.free_memory));
      ds.Set(uint32_t(i), x);
    }
    o.Set("devices", ds);
    return o;
  }

  Napi::Value CudaBench(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Napi::Object t = as_object(info[0], "args");
    const pma::GpuBenchResult r = pma::cuda_bench(int(get_number(t, "device")), parse_dtype(get_string(t, "inDtype")),
                                                  parse_dtype(get_string(t, "outDtype")), int(get_u64(t, "inputs")),
                                                  get_u64(t, "count"), int(get_u64(t, "iterations")));
    Napi::Object o = Napi::Object::New(env);
    o.Set("kernelGBps", r.kernel_gbps);
    o.Set("copyGBps", r.copy_gbps);
    o.Set("h2dGBps", r.h2d_gbps);
    o.Set("d2hGBps", r.d2h_gbps);
    return o;
  }

  pma::GpuState& gpu() {
    if (!gpu_) gpu_ = pma::gpu_state_new();
    return *gpu_;
  }

  pma::Scratch scratch_;
  pma::AnalyzeScratch analyze_scratch_;
  // Created on the first GPU chunk of this environment; freed with it (pinned and device memory).
  pma::GpuStatePtr gpu_;
};

}  // namespace

NODE_API_ADDON(PmaAddon)
