// The threads that run a merge's or an analysis's chunks. Plain C++ threads started by the addon
// (addon.cc hands tasks in and takes results out): a Node worker thread costs 60-130 ms of a core
// to start on a small machine (a whole JS environment and the module graph), a std::thread none.
// Each thread keeps its own scratch buffers and GPU state for its life, so nothing per chunk is
// allocated twice and a GPU's pinned staging is held once per thread.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda/cuda.h"
#include "engine/analyze.h"
#include "engine/chunk.h"

namespace pma {

// What one thread keeps between chunks. Made and freed on its own thread.
struct ThreadState {
  // 0 to count - 1: on GPUs, thread i merges on GPU i mod (number of GPUs).
  int index = 0;
  Scratch scratch;
  AnalyzeScratch analyze;
  std::vector<uint8_t> hash_block;  // output_hash.h's reads
  GpuStatePtr gpu;                  // created on the thread's first GPU chunk

  GpuState& gpu_state() {
    if (!gpu) gpu = gpu_state_new();
    return *gpu;
  }
};

class ChunkThreads {
 public:
  // A task must not throw: it catches what it runs and reports it itself.
  using Task = std::function<void(ThreadState&)>;

  // `count` threads that run any task, and `urgent_only` more that run only urgent ones (the
  // output's hashing when the merge's own threads leave cores free: --threads 1 on 2 cores).
  ChunkThreads(int count, int urgent_only);
  ~ChunkThreads();
  ChunkThreads(const ChunkThreads&) = delete;
  ChunkThreads& operator=(const ChunkThreads&) = delete;

  int count() const { return count_; }
  // Queues a task for the first free thread; an urgent one ahead of every task not urgent (the
  // output's hashing, a sequential stream the end of the merge waits for, goes before chunks).
  void submit(Task task, bool urgent = false);
  // Lets the queued tasks finish, then ends every thread and waits for it. Idempotent.
  void join();

 private:
  void loop(int index, bool urgent_only);

  const int count_;
  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<Task> queue_;
  size_t urgent_ = 0;  // the first urgent_ tasks of queue_ are urgent
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace pma
