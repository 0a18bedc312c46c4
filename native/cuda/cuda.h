// The CUDA backend as the rest of the addon sees it: plain C++ types only, so addon.cc and the
// CPU-only build (cuda/absent.cc) compile without the CUDA toolkit. The CUDA build links
// runtime.cu, pipeline.cu, kernels.cu and bench.cu instead of absent.cc.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/chunk.h"
#include "kernels/kernels.h"

namespace pma {

// Staging per worker thread and GPU: kSlots slots, each holding a piece's inputs and output both in
// pinned host memory and on the device. A slot larger than kMaxSlotBytes buys nothing measurable
// (copies and kernel run at full speed far below it) and costs pinned memory, which the OS cannot
// page out: --gpu-memory beyond kSlots x kMaxSlotBytes per worker is left unused. To be measured on
// the first device run (bench/gpu.bench.js, docs/gpu.md).
inline constexpr int kSlots = 3;
inline constexpr uint64_t kMaxSlotBytes = uint64_t(256) << 20;

struct GpuDevice {
  int index = 0;
  std::string name;
  std::string pci_bus_id;
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
  uint64_t total_memory = 0;
  uint64_t free_memory = 0;  // from NVML; 0 when unknown
};

struct CudaInfo {
  bool built = false;          // the addon was compiled with CUDA
  std::string archs;           // the build's targets, e.g. "80-real;90-real;90-virtual"
  int runtime_version = 0;     // CUDA runtime linked in, 13000 = 13.0
  int driver_version = 0;      // the CUDA version the driver supports (12040 = 12.4); 0: no driver
  std::string driver_release;  // the driver's own version, "550.54.15" (NVML); empty when unknown
  std::string error;           // why no device is listed, when none is
  std::vector<GpuDevice> devices;
};

// True in the CUDA build, whether or not this machine has a GPU.
bool cuda_built();

// Never throws and never crashes for want of a driver or a GPU: the answer says what is missing.
// Creates no CUDA context (runtime.cu).
CudaInfo cuda_info();

// Per-environment GPU state (pinned staging buffers, device buffers, streams per device), kept
// between chunks because pinned allocations are slow; freed with the environment.
struct GpuState;
struct GpuStateDeleter {
  void operator()(GpuState* s) const;
};
using GpuStatePtr = std::unique_ptr<GpuState, GpuStateDeleter>;
GpuStatePtr gpu_state_new();

// Runs a chunk on GPU spec.device within spec.gpu_memory bytes of device memory (and as many
// pinned host bytes): one reader (the calling thread) and one writer thread around a ring of
// staging slots, each slot with its own stream.
ChunkStats run_chunk_cuda(const ChunkSpec& spec, GpuState& state);

// Test hook: merges host buffers on GPU `device` (copies in, kernel, copies out).
void merge_cuda(int device, const MergeArgs& a);

struct GpuBenchResult {
  double kernel_gbps = 0;  // bytes the merge kernel reads and writes, per second
  double copy_gbps = 0;    // device-to-device cudaMemcpy of the same bytes (read + write)
  double h2d_gbps = 0;     // pinned host to device
  double d2h_gbps = 0;     // device to pinned host
};

// Times the merge kernel on `count` elements of n inputs against the device's own copy bandwidth.
GpuBenchResult cuda_bench(int device, DType in, DType out, int n, uint64_t count, int iters);

}  // namespace pma
