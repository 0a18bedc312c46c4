#include "engine/direct_writes.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <utility>

#include "engine/stopwatch.h"
#include "errors.h"

namespace pma {

BufferPool::~BufferPool() {
  for (uint8_t* p : free_) std::free(p);
}

uint8_t* BufferPool::get() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      uint8_t* p = free_.back();
      free_.pop_back();
      return p;
    }
  }
  // Aligned to 2 MiB and backed by huge pages where the kernel gives them: a fresh 8 MiB buffer is
  // then 4 page faults, not 2,048 (each costs microseconds in a VM: bench/fresh-memory.js).
  constexpr size_t kHuge = size_t(2) << 20;
  void* p = nullptr;
  if (::posix_memalign(&p, size_ % kHuge == 0 ? kHuge : kDirectAlign, size_) != 0) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (size_ % kHuge == 0) (void)::madvise(p, size_, MADV_HUGEPAGE);  // a hint: refused is fine
#endif
  return static_cast<uint8_t*>(p);
}

void BufferPool::give_back(uint8_t* p) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(p);
}

namespace {

size_t held_cap() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return DirectWrites::kHeld;
  return std::min(DirectWrites::kHeld, size_t(pages) * size_t(page) / 32);
}

}  // namespace

DirectWrites::DirectWrites() : pool_(std::make_shared<BufferPool>(kBuffer)), held_cap_(held_cap()) {}

DirectWrites::~DirectWrites() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void DirectWrites::write(const std::string& path, uint64_t off, DirectBufferPtr b, size_t at, size_t n,
                         std::string tensor, WriteTicket& ticket) {
  ticket.add();
  std::unique_lock<std::mutex> lock(mu_);
  if (threads_.empty()) {
    for (size_t i = 0; i < kWriters; ++i) threads_.emplace_back(&DirectWrites::loop, this);
  }
  changed_.wait(lock, [&] { return queue_.size() < kQueued || stopping_; });
  queue_.push_back({path, off, std::move(b), at, n, std::move(tensor), &ticket});
  changed_.notify_all();
}

void DirectWrites::loop() {
  for (;;) {
    Write w;
    {
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping: every queued write was done
      w = std::move(queue_.front());
      queue_.pop_front();
      if (in_flight_++ == 0) busy_since_ns_ = now_ns();
    }
    changed_.notify_all();  // room in the queue
    std::exception_ptr error;
    try {
      put(w);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--in_flight_ == 0) busy_.ns += now_ns() - busy_since_ns_;
      if (!error) {
        busy_.bytes += w.n;
        if (held_bytes_ + w.n <= held_cap_) {
          held_bytes_ += w.n;
          held_[w.path][w.off] = {w.buf, w.at, w.n};
        }
      }
    }
    w.buf.reset();
    w.ticket->done(error);  // last: the chunk may be reported (and its hash asked for) from here on
  }
}

// On the writer thread. The file is opened for each write (an 8 MiB transfer): a handle kept
// from one merge to the next could point at a file since replaced. A device that refuses the
// alignment (larger blocks) gets the bytes through the page cache instead, as OutputWriter's own
// direct writes do.
void DirectWrites::put(const Write& w) {
  const uint8_t* p = w.buf->data() + w.at;
  const std::unique_ptr<File> direct = File::open_direct(w.path);
  if (direct && direct->try_write_at(p, w.n, w.off, w.tensor)) return;
  File(w.path, true).write_at(p, w.n, w.off, w.tensor);
}

DirectBufferPtr DirectWrites::take_held(const std::string& path, uint64_t off, const uint8_t** p, size_t* n) {
  std::lock_guard<std::mutex> lock(mu_);
  auto file = held_.find(path);
  if (file == held_.end()) return nullptr;
  auto it = file->second.find(off);
  if (it == file->second.end()) return nullptr;
  Held h = std::move(it->second);
  file->second.erase(it);
  held_bytes_ -= h.n;
  *p = h.buf->data() + h.at;
  *n = h.n;
  return h.buf;
}

uint64_t DirectWrites::next_held(const std::string& path, uint64_t off) {
  std::lock_guard<std::mutex> lock(mu_);
  auto file = held_.find(path);
  if (file == held_.end()) return UINT64_MAX;
  auto it = file->second.lower_bound(off);
  return it == file->second.end() ? UINT64_MAX : it->first;
}

DirectWrites::Busy DirectWrites::busy() {
  std::lock_guard<std::mutex> lock(mu_);
  Busy b = busy_;
  if (in_flight_ > 0) b.ns += now_ns() - busy_since_ns_;
  return b;
}

void DirectWrites::forget_all() {
  std::lock_guard<std::mutex> lock(mu_);
  held_.clear();
  held_bytes_ = 0;
}

void DirectWrites::forget_held(const std::string& path, uint64_t from, uint64_t to) {
  std::lock_guard<std::mutex> lock(mu_);
  auto file = held_.find(path);
  if (file == held_.end()) return;
  auto& m = file->second;
  for (auto it = m.lower_bound(from); it != m.end() && it->first < to;) {
    held_bytes_ -= it->second.n;
    it = m.erase(it);
  }
  if (m.empty()) held_.erase(file);
}

}  // namespace pma
