#include "engine/chunk_threads.h"

#include <utility>

namespace pma {

ChunkThreads::ChunkThreads(int count, int urgent_only) : count_(count) {
  threads_.reserve(size_t(count + urgent_only));
  for (int i = 0; i < count + urgent_only; ++i) threads_.emplace_back(&ChunkThreads::loop, this, i, i >= count);
}

ChunkThreads::~ChunkThreads() { join(); }

void ChunkThreads::submit(Task task, bool urgent) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (urgent) {
      queue_.insert(queue_.begin() + std::ptrdiff_t(urgent_), std::move(task));  // after the urgent ones: in order
      ++urgent_;
    } else {
      queue_.push_back(std::move(task));
    }
  }
  // Every thread: a task that is not urgent must not wake only a thread that takes urgent ones.
  ready_.notify_all();
}

void ChunkThreads::join() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void ChunkThreads::loop(int index, bool urgent_only) {
  // Local to the thread, so its GPU state (streams, pinned and device memory) is freed where it
  // was made.
  ThreadState state;
  state.index = index;
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const auto has_work = [&] { return urgent_only ? urgent_ > 0 : !queue_.empty(); };
      ready_.wait(lock, [&] { return stopping_ || has_work(); });
      if (!has_work()) return;  // stopping, and nothing left for this thread
      task = std::move(queue_.front());
      queue_.pop_front();
      if (urgent_ > 0) --urgent_;
    }
    task(state);
  }
}

}  // namespace pma
