#include "engine/chunk_threads.h"

#include <utility>

namespace pma {

ChunkThreads::ChunkThreads(int count) : count_(count) {
  threads_.reserve(size_t(count));
  for (int i = 0; i < count; ++i) threads_.emplace_back(&ChunkThreads::loop, this, i);
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
  ready_.notify_one();
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

void ChunkThreads::loop(int index) {
  // Local to the thread, so its GPU state (streams, pinned and device memory) is freed where it
  // was made.
  ThreadState state;
  state.index = index;
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to run
      task = std::move(queue_.front());
      queue_.pop_front();
      if (urgent_ > 0) --urgent_;
    }
    task(state);
  }
}

}  // namespace pma
