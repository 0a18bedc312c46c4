// POSIX file access for the engine: whole reads and writes at an offset (retrying short
// transfers and EINTR), and read-only mappings. Every failure names the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace pma {

class File {
 public:
  File() = default;
  File(const std::string& path, bool write);
  // Opens a file that must exist for reading, and for writing too with `write_too` (an output read
  // back to hash it, whose CRC-32 fields are written). A path that is not a usable file (ENOENT,
  // EACCES, EISDIR, ...) is E_INPUT, any other failure E_IO; both say `what` and name the path.
  static File open_existing(const std::string& path, bool write_too, const std::string& what);
  // Opens for writing with O_DIRECT; nullptr where the filesystem does not support it (tmpfs).
  static std::unique_ptr<File> open_direct(const std::string& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  File(File&& o) noexcept;
  File& operator=(File&& o) noexcept;

  bool open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  // Reads exactly n bytes at off; a file that ends first is an input error, not a short result.
  void read_at(void* buf, size_t n, uint64_t off, const std::string& tensor) const;
  // Reads up to n bytes at off, fewer only where the file ends; returns how many.
  size_t read_some(void* buf, size_t n, uint64_t off, const std::string& tensor) const;
  // Writes exactly n bytes at off. Out of space or quota (ENOSPC, EDQUOT) is E_NOSPACE, any
  // other failure E_IO; both name the file and the tensor.
  void write_at(const void* buf, size_t n, uint64_t off, const std::string& tensor) const;
  // As write_at, but returns false instead of failing when the kernel refuses the transfer as
  // misaligned (EINVAL from an O_DIRECT write on a device with larger blocks), before any byte.
  bool try_write_at(const void* buf, size_t n, uint64_t off, const std::string& tensor) const;
  // Starts writeback of [off, off+n) without waiting for it, so the final fsync has little left
  // to do and the disk writes while the merge computes. A hint: failures are ignored, except
  // running out of space (E_NOSPACE, naming the file and `tensor`, the first in the range).
  void start_writeback(uint64_t off, uint64_t n, const std::string& tensor) const;
  // Waits until [off, off+n) is on disk, then drops it from the page cache. Keeps a merge larger
  // than RAM from evicting everyone else's cached files. Failures are ignored as for
  // start_writeback, except running out of space.
  void flush_and_drop(uint64_t off, uint64_t n, const std::string& tensor) const;
  // Drops [off, off+n) from the page cache (clean pages: inputs, or outputs already on disk). A
  // hint: failures are ignored.
  void drop(uint64_t off, uint64_t n) const;
  // Allocates the blocks of [0, n) without writing them (fallocate), so that later writes only
  // overwrite: on ext4 and XFS an O_DIRECT write into allocated blocks shares the file's lock
  // with the others in flight, where one that allocates holds it alone for the whole transfer
  // (and any page-cache write waits for it). Returns false where the filesystem cannot (no
  // emulation by writing zeros); out of space or quota is E_NOSPACE naming the file, another
  // failure E_IO.
  bool preallocate(uint64_t n) const;
  int fd() const { return fd_; }

 private:
  // sync_file_range(flags) over [off, off+n); see start_writeback for what it reports.
  void sync_range(uint64_t off, uint64_t n, unsigned flags, const std::string& tensor) const;

  int fd_ = -1;
  std::string path_;
};

// Alignment of O_DIRECT offsets, lengths and buffers (the logical block size of any disk today).
inline constexpr uint64_t kDirectAlign = 4096;

// A read-only window [off, off+n) of a file, page-aligned underneath.
class Mapping {
 public:
  Mapping(const File& f, uint64_t off, size_t n, const std::string& tensor);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& o) noexcept;
  const uint8_t* data() const { return data_; }

 private:
  void* base_ = nullptr;
  size_t len_ = 0;
  const uint8_t* data_ = nullptr;
};

}  // namespace pma
