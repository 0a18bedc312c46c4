// The CPU-only build's CUDA backend: it reports itself absent and refuses work, so the rest of the
// addon is the same in both builds.
#include "cuda/cuda.h"
#include "errors.h"

namespace pma {

namespace {
[[noreturn]] void no_cuda() {
  throw EngineError(kCodeUnsupported,
                    "this build of pma has no CUDA support (it was built without nvcc); reinstall with the CUDA "
                    "toolkit on PATH or PMA_CUDA=1");
}
}  // namespace

bool cuda_built() { return false; }

CudaInfo cuda_info() {
  CudaInfo info;
  info.error = "built without CUDA";
  return info;
}

struct GpuState {};
void GpuStateDeleter::operator()(GpuState* s) const { delete s; }
GpuStatePtr gpu_state_new() { return GpuStatePtr(new GpuState); }
ChunkStats run_chunk_cuda(const ChunkSpec&, GpuState&) { no_cuda(); }
void merge_cuda(int, const MergeArgs&) { no_cuda(); }
GpuBenchResult cuda_bench(int, DType, DType, int, uint64_t, int) { no_cuda(); }

}  // namespace pma
