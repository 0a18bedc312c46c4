// Output written with O_DIRECT off the chunk threads (--write direct), and kept for the output's
// hash. A chunk thread fills an aligned buffer, hands it to the writer threads and goes on
// computing: O_DIRECT makes the disk copy the bytes (no page cache to fill, nothing left for the
// final fsync), and a thread waiting for the disk holds no core. The buffer is then kept, up to a
// limit, until the hash reaches its bytes, so that the hash does not read the output back from the
// disk. The chunk's result is reported once its writes are done (WriteTicket), so the journal
// never records a chunk whose bytes are not on disk.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/file_io.h"

namespace pma {

// What a chunk's writes report to: one add() per write queued, one done() when it is finished
// (with the error that stopped it, or null).
class WriteTicket {
 public:
  virtual void add() = 0;
  virtual void done(std::exception_ptr error) = 0;

 protected:
  ~WriteTicket() = default;
};

// Aligned buffers of one size, reused: fresh memory is costly to touch on some machines.
class BufferPool {
 public:
  explicit BufferPool(size_t size) : size_(size) {}
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  uint8_t* get();
  void give_back(uint8_t* p);

 private:
  const size_t size_;
  std::mutex mu_;
  std::vector<uint8_t*> free_;
};

// One buffer of the pool, back in it when the last holder lets go (the pool lives as long).
class DirectBuffer {
 public:
  explicit DirectBuffer(std::shared_ptr<BufferPool> pool) : pool_(std::move(pool)), data_(pool_->get()) {}
  ~DirectBuffer() { pool_->give_back(data_); }
  DirectBuffer(const DirectBuffer&) = delete;
  DirectBuffer& operator=(const DirectBuffer&) = delete;
  uint8_t* data() const { return data_; }

 private:
  std::shared_ptr<BufferPool> pool_;
  uint8_t* data_;
};
using DirectBufferPtr = std::shared_ptr<DirectBuffer>;

class DirectWrites {
 public:
  // Bytes per buffer: the unit of a direct write.
  static constexpr size_t kBuffer = size_t(8) << 20;
  // Writer threads: two writes in flight keep a disk busier than one (measured on a virtual disk,
  // docs/performance.md); they wait for the disk, so they cost no core.
  static constexpr size_t kWriters = 2;
  // At most this many buffers wait for the writers: a chunk thread that finds the queue full waits
  // for the disk (the writer never waits for anything but the disk, so this cannot deadlock).
  static constexpr size_t kQueued = 4;
  // At most this many bytes are kept for the hash (and no more than 1/32 of the machine's memory);
  // beyond it a buffer is released once written and the hash reads those bytes back. The hash of
  // one file is one stream, slower than two threads merging: with 64 MiB kept, the hash of a 2 GB
  // output read much of it back from the disk; with 256 MiB, nothing (docs/performance.md).
  static constexpr size_t kHeld = size_t(256) << 20;

  DirectWrites();
  ~DirectWrites();
  DirectWrites(const DirectWrites&) = delete;
  DirectWrites& operator=(const DirectWrites&) = delete;

  // A buffer of kBuffer bytes to fill.
  DirectBufferPtr take() { return std::make_shared<DirectBuffer>(pool_); }

  // Queues the write of n bytes at `at` in `b` to [off, off + n) of the file `path` (off, n and
  // `at` 4 KiB-aligned); `tensor` names the first tensor of the range in an error. Keeps the
  // bytes for the hash while there is room. Waits while kQueued writes are queued.
  void write(const std::string& path, uint64_t off, DirectBufferPtr b, size_t at, size_t n, std::string tensor,
             WriteTicket& ticket);

  // The bytes kept for [off, ...) of `path`, if a held write starts there: its length, the bytes
  // in *p (valid while the returned buffer lives). The kept write is forgotten.
  DirectBufferPtr take_held(const std::string& path, uint64_t off, const uint8_t** p, size_t* n);
  // Where the first kept write of `path` at or after `off` starts (UINT64_MAX: none): bytes read
  // back stop there.
  uint64_t next_held(const std::string& path, uint64_t off);
  // Forgets every kept write of `path` in [from, to): bytes the hash reads from the file instead.
  void forget_held(const std::string& path, uint64_t from, uint64_t to);
  // Forgets every kept write (the hashes were abandoned: a merge that failed).
  void forget_all();

  // How busy the writers kept the disk, since they started: the nanoseconds during which at
  // least one write was in flight, and the bytes written.
  struct Busy {
    uint64_t ns = 0;
    uint64_t bytes = 0;
  };
  Busy busy();

 private:
  struct Write {
    std::string path;
    uint64_t off = 0;
    DirectBufferPtr buf;
    size_t at = 0, n = 0;
    std::string tensor;
    WriteTicket* ticket = nullptr;
  };
  struct Held {
    DirectBufferPtr buf;
    size_t at, n;
  };

  void loop();
  void put(const Write& w);

  std::shared_ptr<BufferPool> pool_;
  const size_t held_cap_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Write> queue_;
  bool stopping_ = false;
  // Writes in flight, since when, and the totals of busy().
  int in_flight_ = 0;
  uint64_t busy_since_ns_ = 0;
  Busy busy_;
  size_t held_bytes_ = 0;
  std::unordered_map<std::string, std::map<uint64_t, Held>> held_;
  std::vector<std::thread> threads_;
};

}  // namespace pma
