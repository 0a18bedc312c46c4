#include "engine/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "engine/faults.h"
#include "errors.h"

namespace pma {
namespace {

[[noreturn]] void io_fail(const std::string& what, const std::string& path, const std::string& tensor, int err) {
  std::string msg = what + " " + path;
  if (!tensor.empty()) msg += " (tensor " + tensor + ")";
  if (err != 0) msg += std::string(": ") + std::strerror(err);
  throw EngineError(kCodeIo, msg, path, tensor);
}

bool out_of_space(int err) { return err == ENOSPC || err == EDQUOT; }

// A failed write (or writeback) of an output: out of space or over quota is E_NOSPACE (what it
// needs is room on the output's filesystem, not a working disk); anything else is E_IO.
[[noreturn]] void write_fail(const std::string& path, const std::string& tensor, int err) {
  if (!out_of_space(err)) io_fail("write failed on", path, tensor, err);
  std::string msg = "no space left on the device writing " + path;
  if (!tensor.empty()) msg += " (tensor " + tensor + ")";
  msg += std::string(": ") + std::strerror(err);
  throw EngineError(kCodeNoSpace, msg, path, tensor);
}

}  // namespace

File::File(const std::string& path, bool write) : path_(path) {
  do {
    fd_ = ::open(path.c_str(), (write ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
  } while (fd_ < 0 && errno == EINTR);
  if (fd_ < 0) io_fail(write ? "cannot open output" : "cannot open input", path, {}, errno);
}

File File::open_existing(const std::string& path, bool write_too, const std::string& what) {
  File f;
  f.path_ = path;
  do {
    f.fd_ = ::open(path.c_str(), (write_too ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  } while (f.fd_ < 0 && errno == EINTR);
  if (f.fd_ < 0) {
    const int err = errno;
    const bool bad_path = err == ENOENT || err == EACCES || err == EISDIR || err == ENOTDIR || err == EPERM ||
                          err == ELOOP || err == ENAMETOOLONG;
    throw EngineError(bad_path ? kCodeInput : kCodeIo, what + " " + path + ": " + std::strerror(err), path);
  }
  return f;
}

std::unique_ptr<File> File::open_direct(const std::string& path) {
#if defined(O_DIRECT)
  int fd;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_DIRECT);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == EINVAL) return nullptr;
    io_fail("cannot open output", path, {}, errno);
  }
  auto f = std::make_unique<File>();
  f->fd_ = fd;
  f->path_ = path;
  return f;
#else
  (void)path;
  return nullptr;
#endif
}

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

File::File(File&& o) noexcept : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)) {}

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}

bool File::preallocate(uint64_t n) const {
  if (n == 0) return true;
  int err = injected_fault(FaultSite::Reserve, path_);
#if defined(__linux__)
  if (err == 0) {
    while (::fallocate(fd_, 0, 0, off_t(n)) != 0) {
      if (errno != EINTR) {
        err = errno;
        break;
      }
    }
  }
#else
  if (err == 0) err = EOPNOTSUPP;
#endif
  if (err == 0) return true;
  if (err == EOPNOTSUPP || err == ENOSYS || err == EINVAL) return false;
  if (out_of_space(err)) {
    throw EngineError(kCodeNoSpace,
                      "no space left on the device for " + path_ + " (" + std::to_string(n) +
                          " bytes reserved before the merge writes it): " + std::strerror(err),
                      path_);
  }
  io_fail("cannot reserve space for", path_, {}, err);
}

void File::read_at(void* buf, size_t n, uint64_t off, const std::string& tensor) const {
  auto* p = static_cast<uint8_t*>(buf);
  if (const int err = injected_fault(FaultSite::Read, path_)) io_fail("read failed on", path_, tensor, err);
  while (n > 0) {
    const ssize_t r = ::pread(fd_, p, n, off_t(off));
    if (r < 0) {
      if (errno == EINTR) continue;
      io_fail("read failed on", path_, tensor, errno);
    }
    if (r == 0) {
      throw EngineError(
          kCodeInput,
          "unexpected end of file in " + path_ + " (tensor " + tensor + "): the file is shorter than its header says",
          path_, tensor);
    }
    p += r;
    n -= size_t(r);
    off += uint64_t(r);
  }
}

size_t File::read_some(void* buf, size_t n, uint64_t off, const std::string& tensor) const {
  auto* p = static_cast<uint8_t*>(buf);
  if (const int err = injected_fault(FaultSite::Read, path_)) io_fail("read failed on", path_, tensor, err);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd_, p + got, n - got, off_t(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      io_fail("read failed on", path_, tensor, errno);
    }
    if (r == 0) break;
    got += size_t(r);
  }
  return got;
}

void File::write_at(const void* buf, size_t n, uint64_t off, const std::string& tensor) const {
  const auto* p = static_cast<const uint8_t*>(buf);
  if (const int err = injected_fault(FaultSite::Write, path_)) write_fail(path_, tensor, err);
  while (n > 0) {
    const ssize_t r = ::pwrite(fd_, p, n, off_t(off));
    if (r < 0) {
      if (errno == EINTR) continue;
      write_fail(path_, tensor, errno);
    }
    p += r;
    n -= size_t(r);
    off += uint64_t(r);
  }
}

namespace {
#if defined(__linux__)
constexpr unsigned kSyncWrite = SYNC_FILE_RANGE_WRITE;
constexpr unsigned kSyncWait = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
#else
constexpr unsigned kSyncWrite = 0, kSyncWait = 0;
#endif

// The page cache holds files in folios of up to 2 MiB, and a drop skips any folio it does not
// cover whole; so the range is widened to 2 MiB boundaries. Dropping a neighbour's pages is
// harmless: they are read again from disk if still needed.
constexpr uint64_t kDropAlign = uint64_t(2) << 20;
inline uint64_t align_down(uint64_t x) { return x & ~(kDropAlign - 1); }
inline uint64_t align_up(uint64_t x) { return (x + kDropAlign - 1) & ~(kDropAlign - 1); }
}  // namespace

// sync_file_range as a hint: only running out of space is reported (E_NOSPACE, naming the file);
// any other failure is left to the fdatasync that records the chunk.
void File::sync_range(uint64_t off, uint64_t n, unsigned flags, const std::string& tensor) const {
  int err = injected_fault(FaultSite::Sync, path_);
#if defined(__linux__)
  if (err == 0 && ::sync_file_range(fd_, off_t(off), off_t(n), flags) != 0) err = errno;
#else
  (void)off;
  (void)n;
  (void)flags;
#endif
  if (out_of_space(err)) write_fail(path_, tensor, err);
}

void File::start_writeback(uint64_t off, uint64_t n, const std::string& tensor) const {
  if (n > 0) sync_range(off, n, kSyncWrite, tensor);
}

void File::flush_and_drop(uint64_t off, uint64_t n, const std::string& tensor) const {
  if (n == 0) return;
  const uint64_t a = align_down(off), b = align_up(off + n);
  sync_range(a, b - a, kSyncWait, tensor);
  drop(a, b - a);
}

void File::drop(uint64_t off, uint64_t n) const {
  if (n == 0) return;
  const uint64_t a = align_down(off), b = align_up(off + n);
#if defined(POSIX_FADV_DONTNEED)
  ::posix_fadvise(fd_, off_t(a), off_t(b - a), POSIX_FADV_DONTNEED);
#else
  (void)a;
  (void)b;
#endif
}

bool File::try_write_at(const void* buf, size_t n, uint64_t off, const std::string& tensor) const {
  if (const int err = injected_fault(FaultSite::Write, path_)) write_fail(path_, tensor, err);
  ssize_t r;
  do {
    r = ::pwrite(fd_, buf, n, off_t(off));
  } while (r < 0 && errno == EINTR);
  if (r < 0 && errno == EINVAL) return false;
  if (r < 0) write_fail(path_, tensor, errno);
  if (size_t(r) < n) write_at(static_cast<const uint8_t*>(buf) + r, n - size_t(r), off + uint64_t(r), tensor);
  return true;
}

Mapping::Mapping(const File& f, uint64_t off, size_t n, const std::string& tensor) {
  if (n == 0) return;
  static const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  struct stat st {};
  if (::fstat(f.fd(), &st) != 0) io_fail("cannot stat", f.path(), tensor, errno);
  if (uint64_t(st.st_size) < off + n) {
    throw EngineError(
        kCodeInput,
        "unexpected end of file in " + f.path() + " (tensor " + tensor + "): the file is shorter than its header says",
        f.path(), tensor);
  }
  // The window widened to 2 MiB file offsets (within the file): the kernel maps a large
  // page-cache folio whole only where the mapping covers it, and places a mapping of 2 MiB or
  // more at an address congruent to its offset.
  constexpr uint64_t kAlign = uint64_t(2) << 20;
  const uint64_t file_end = (uint64_t(st.st_size) + page - 1) / page * page;
  const uint64_t start = off - off % kAlign;
  const uint64_t end = std::min(file_end, (off + n + kAlign - 1) / kAlign * kAlign);
  len_ = size_t(end - start);
  if (const int err = injected_fault(FaultSite::Map, f.path())) io_fail("cannot map", f.path(), tensor, err);
  base_ = ::mmap(nullptr, len_, PROT_READ, MAP_SHARED, f.fd(), off_t(start));
  if (base_ == MAP_FAILED) {
    base_ = nullptr;
    io_fail("cannot map", f.path(), tensor, errno);
  }
  ::madvise(base_, len_, MADV_SEQUENTIAL);
  data_ = static_cast<const uint8_t*>(base_) + (off - start);
}

Mapping::~Mapping() {
  if (base_ != nullptr) ::munmap(base_, len_);
}

Mapping::Mapping(Mapping&& o) noexcept : base_(std::exchange(o.base_, nullptr)), len_(o.len_), data_(o.data_) {}

}  // namespace pma
