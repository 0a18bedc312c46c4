#include "engine/output_writer.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "engine/stopwatch.h"

namespace pma {
namespace {

constexpr size_t kRunBuffer = size_t(8) << 20;
constexpr size_t kSmallWrite = size_t(64) << 10;  // writes below this are gathered
constexpr size_t kGatherBuffer = size_t(1) << 20;
inline uint64_t down(uint64_t x) { return x & ~(kDirectAlign - 1); }
inline uint64_t up(uint64_t x) { return (x + kDirectAlign - 1) & ~(kDirectAlign - 1); }

}  // namespace

AlignedBuffer::~AlignedBuffer() { std::free(data); }

void AlignedBuffer::reserve(size_t n) {
  if (size >= n) return;
  void* p = nullptr;
  if (::posix_memalign(&p, kDirectAlign, n) != 0) throw std::bad_alloc();
  std::free(data);
  data = static_cast<uint8_t*>(p);
  size = n;
}

void OutputWriter::buffered(uint64_t off, const uint8_t* data, size_t n) const {
  if (n == 0) return;
  files_.get(file_).write_at(data, n, off, tensor_);
}

void OutputWriter::write(uint32_t file, uint64_t off, const uint8_t* data, size_t n, const std::string& tensor) {
  if (n == 0) return;
  Timed t(ns);
  if (!direct_ || files_.direct(file) == nullptr) {
    if (n < kSmallWrite) {
      gather(file, off, data, n, tensor);
    } else {
      files_.get(file).write_at(data, n, off, tensor);
    }
    return;
  }
  if (pending_ && (file != file_ || off != end_)) flush();
  if (!pending_) {
    if (async_) run_ = async_->take();
    else buf_.reserve(kRunBuffer);
    pending_ = true;
    file_ = file;
    base_ = down(off);
    start_ = end_ = off;
  }
  tensor_ = tensor;
  while (n > 0) {
    const size_t room = size_t(base_ + run_size() - end_);
    const size_t m = n < room ? n : room;
    std::memcpy(run_data() + (end_ - base_), data, m);
    end_ += m;
    data += m;
    n -= m;
    if (end_ - base_ == run_size()) write_aligned(false);
  }
}

// Writes the unaligned head of the run (buffered, once), then the aligned middle (direct). On the
// final flush the unaligned tail goes buffered; otherwise the buffer is full, so the run's end is
// aligned (base_ and the buffer size are) and the buffer starts afresh there.
// With async_, the middle goes to the writer threads, and the next run starts in a fresh buffer.
void OutputWriter::write_aligned(bool final_flush) {
  uint8_t* const data = run_data();
  const uint64_t head_end = up(start_) < end_ ? up(start_) : end_;
  if (start_ % kDirectAlign != 0) {
    buffered(start_, data + (start_ - base_), size_t(head_end - start_));
    start_ = head_end;
  }
  const uint64_t mid_end = down(end_);
  if (mid_end > start_) {
    const uint8_t* p = data + (start_ - base_);
    const size_t n = size_t(mid_end - start_);
    if (async_) {
      async_->write(files_.path(file_), start_, run_, size_t(start_ - base_), n, tensor_, *ticket_);
    } else if (!files_.direct(file_)->try_write_at(p, n, start_, tensor_)) {
      direct_ = false;  // this device wants larger alignment: the page cache for the rest
      buffered(start_, p, n);
    }
    start_ = mid_end;
  }
  if (final_flush) {
    buffered(start_, data + (start_ - base_), size_t(end_ - start_));
    pending_ = false;
  }
  if (async_) run_ = final_flush ? nullptr : async_->take();
  base_ = start_ = end_;
}

void OutputWriter::gather(uint32_t file, uint64_t off, const uint8_t* data, size_t n, const std::string& tensor) {
  if (!gathered_.empty() &&
      (file != g_file_ || off != g_off_ + gathered_.size() || gathered_.size() + n > kGatherBuffer)) {
    flush_gathered();
  }
  if (gathered_.empty()) {
    gathered_.reserve(kGatherBuffer);
    g_file_ = file;
    g_off_ = off;
    g_tensor_ = tensor;
  }
  gathered_.insert(gathered_.end(), data, data + n);
}

void OutputWriter::flush_gathered() {
  if (gathered_.empty()) return;
  // A failure names the first tensor of the run: the write covered it and those after it.
  files_.get(g_file_).write_at(gathered_.data(), gathered_.size(), g_off_, g_tensor_);
  gathered_.clear();
}

void OutputWriter::completed(uint32_t file, uint64_t off, uint64_t n, const std::string& tensor) {
  if (n == 0) return;
  Timed t(ns);
  if (wb_end_ > wb_start_ && (file != wb_file_ || off != wb_end_)) start_writeback();
  if (wb_end_ == wb_start_) {
    wb_file_ = file;
    wb_start_ = wb_end_ = off;
    wb_tensor_ = tensor;
  }
  wb_end_ += n;
  if (wb_end_ - wb_start_ >= kRunBuffer) start_writeback();
}

void OutputWriter::start_writeback() {
  if (wb_end_ == wb_start_) return;
  if (!gathered_.empty() && g_file_ == wb_file_) flush_gathered();
  files_.get(wb_file_).start_writeback(wb_start_, wb_end_ - wb_start_, wb_tensor_);
  wb_start_ = wb_end_;
}

void OutputWriter::flush() {
  Timed t(ns);
  flush_gathered();
  if (pending_) write_aligned(true);
  start_writeback();
}

}  // namespace pma
