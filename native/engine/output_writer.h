// Writes a chunk's results. Buffered (the default): straight to the page cache. Direct: writes
// that continue each other are gathered in an aligned buffer and the 4 KiB-aligned middle of each
// run goes to disk with O_DIRECT; the unaligned head and tail of a run, which share disk blocks
// with the neighbouring chunks, go through the page cache, so two workers never write the same
// block directly. Unwritten data after an error does not matter: the output is discarded.
// Either way, small writes that continue each other are gathered first (a file of a million tiny
// tensors would otherwise cost a system call per tensor). Given a DirectWrites, the aligned middle
// goes to its writer threads instead of being written here (direct_writes.h), and each run starts
// in a fresh buffer from its pool.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/direct_writes.h"
#include "engine/file_table.h"

namespace pma {

struct AlignedBuffer {
  uint8_t* data = nullptr;
  size_t size = 0;
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();
  void reserve(size_t n);
};

class OutputWriter {
 public:
  // Nanoseconds spent in write(), completed() and flush().
  uint64_t ns = 0;

  OutputWriter(FileTable& files, bool direct, AlignedBuffer& buf, DirectWrites* async = nullptr,
               WriteTicket* ticket = nullptr)
      : files_(files), direct_(direct), buf_(buf), async_(ticket ? async : nullptr), ticket_(ticket) {}
  void write(uint32_t file, uint64_t off, const uint8_t* data, size_t n, const std::string& tensor);
  // An op's output range [off, off+n) is complete: starts its writeback, once enough has
  // accumulated (one request per 8 MiB or per run, not one per tiny tensor). `tensor` names the
  // range if the disk turns out to be full.
  void completed(uint32_t file, uint64_t off, uint64_t n, const std::string& tensor);
  // Writes everything pending and starts its writeback; call before the chunk ends.
  void flush();

 private:
  void buffered(uint64_t off, const uint8_t* data, size_t n) const;
  void write_aligned(bool final_flush);
  void gather(uint32_t file, uint64_t off, const uint8_t* data, size_t n, const std::string& tensor);
  void flush_gathered();

  uint8_t* run_data() const { return async_ ? run_->data() : buf_.data; }
  size_t run_size() const { return async_ ? DirectWrites::kBuffer : buf_.size; }

  FileTable& files_;
  bool direct_;
  AlignedBuffer& buf_;
  DirectWrites* async_;
  WriteTicket* ticket_;
  DirectBufferPtr run_;  // with async_: the pending run's buffer, never written into once handed over
  // The pending run: file offset `base_` is buf_.data[0] (4 KiB-aligned); bytes of the run are
  // [start_, end_) in file offsets; [base_, start_) is not ours and never written.
  bool pending_ = false;
  uint32_t file_ = 0;
  uint64_t base_ = 0, start_ = 0, end_ = 0;
  std::string tensor_;
  // Gathered small writes (buffered mode): bytes [g_off_, g_off_ + gathered_.size()) of g_file_.
  std::vector<uint8_t> gathered_;
  uint32_t g_file_ = 0;
  uint64_t g_off_ = 0;
  std::string g_tensor_;
  // Completed output not yet handed to writeback: [wb_start_, wb_end_) of wb_file_, starting
  // with tensor wb_tensor_.
  uint32_t wb_file_ = 0;
  uint64_t wb_start_ = 0, wb_end_ = 0;
  std::string wb_tensor_;
  void start_writeback();
};

}  // namespace pma
