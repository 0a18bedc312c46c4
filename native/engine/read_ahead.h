// Small reads served from a window read ahead of them: a file of a million tiny tensors would
// otherwise cost a system call per tensor and input. Large reads go straight to the file.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/file_table.h"

namespace pma {

inline constexpr size_t kSmallRead = size_t(64) << 10;
inline constexpr size_t kReadWindow = size_t(1) << 20;

class ReadAhead {
 public:
  explicit ReadAhead(FileTable& files) : files_(files) {}

  void read(uint32_t file, uint8_t* dst, size_t n, uint64_t off, const std::string& tensor) {
    const File& f = files_.get(file);
    if (n >= kSmallRead) return f.read_at(dst, n, off, tensor);
    Window& w = window(file);
    if (off < w.start || off + n > w.start + w.len) {
      w.buf.resize(kReadWindow);
      w.start = off;
      w.len = f.read_some(w.buf.data(), kReadWindow, off, tensor);
      // The file ends inside the range: read_at reports it, naming the tensor.
      if (w.len < n) return f.read_at(dst, n, off, tensor);
    }
    std::memcpy(dst, w.buf.data() + (off - w.start), n);
  }

 private:
  struct Window {
    uint32_t file = 0;
    uint64_t start = 0;
    size_t len = 0;
    std::vector<uint8_t> buf;
  };

  Window& window(uint32_t file) {
    for (Window& w : windows_) {
      if (w.file == file) return w;
    }
    windows_.push_back(Window{file, 0, 0, {}});
    return windows_.back();
  }

  FileTable& files_;
  std::vector<Window> windows_;
};

}  // namespace pma
