// Small reads served from a window read ahead of them: a file of a million tiny tensors would
// otherwise cost a system call per tensor and input. Large reads go straight to the file.
//
// The window is only filled for a small read that follows on from the previous small read of the
// same file, as runs of tiny tensors do, and it grows as they go on: 64 KiB, then twice that on
// each refill, up to 1 MiB. The tail of an ordinary tensor (its last, partial block) is a small
// read too, but what follows it is the next tensor's first full block: a 1 MiB window there read
// 1 MiB to use a few KiB, once per tensor tail and input (20 inputs merged 4x slower for it).
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/file_table.h"
#include "engine/stopwatch.h"

namespace pma {

inline constexpr size_t kSmallRead = size_t(64) << 10;
inline constexpr size_t kReadWindow = size_t(1) << 20;

class ReadAhead {
 public:
  explicit ReadAhead(FileTable& files) : files_(files) {}

  // Nanoseconds spent in read().
  uint64_t ns = 0;

  void read(uint32_t file, uint8_t* dst, size_t n, uint64_t off, const std::string& tensor) {
    Timed t(ns);
    const File& f = files_.get(file);
    if (n >= kSmallRead) return f.read_at(dst, n, off, tensor);
    Window& w = window(file);
    const bool follows_on = off == w.last_end;
    w.last_end = off + n;
    if (off >= w.start && off + n <= w.start + w.len) {
      std::memcpy(dst, w.buf.get() + (off - w.start), n);
      return;
    }
    if (!follows_on) {
      w.next = kSmallRead;
      return f.read_at(dst, n, off, tensor);
    }
    if (w.capacity < w.next) {
      w.buf.reset(new uint8_t[w.next]);  // not zeroed: the read fills what is used
      w.capacity = w.next;
    }
    w.start = off;
    w.len = f.read_some(w.buf.get(), w.next, off, tensor);
    w.next = w.next * 2 < kReadWindow ? w.next * 2 : kReadWindow;
    // The file ends inside the range: read_at reports it, naming the tensor.
    if (w.len < n) return f.read_at(dst, n, off, tensor);
    std::memcpy(dst, w.buf.get(), n);
  }

 private:
  struct Window {
    uint32_t file = 0;
    uint64_t start = 0;
    size_t len = 0;
    // Where the last small read of this file ended (none yet: never matches an offset).
    uint64_t last_end = UINT64_MAX;
    // The size of the next fill, and the buffer.
    size_t next = kSmallRead;
    size_t capacity = 0;
    std::unique_ptr<uint8_t[]> buf;
  };

  Window& window(uint32_t file) {
    for (Window& w : windows_) {
      if (w.file == file) return w;
    }
    windows_.push_back(Window{file, 0, 0, UINT64_MAX, kSmallRead, 0, nullptr});
    return windows_.back();
  }

  FileTable& files_;
  std::vector<Window> windows_;
};

}  // namespace pma
