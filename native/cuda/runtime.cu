// Device discovery and CUDA error translation. cudart is linked statically, so a machine with no
// driver loads the addon fine: the first runtime call reports the missing driver as an error code.
#include <cuda_runtime.h>

#include <string>

#include "cuda/cuda.h"
#include "cuda/runtime.cuh"
#include "errors.h"

#ifndef PMA_CUDA_ARCHS
#define PMA_CUDA_ARCHS "unknown"
#endif

namespace pma {

namespace {
// Errors after which the CUDA context of the process is unusable.
bool sticky(cudaError_t e) {
  return e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure || e == cudaErrorIllegalInstruction ||
         e == cudaErrorMisalignedAddress || e == cudaErrorInvalidPc || e == cudaErrorHardwareStackError ||
         e == cudaErrorECCUncorrectable;
}
}  // namespace

void cuda_check(cudaError_t e, int device, const char* what, const std::string& tensor) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear it, so that a later launch check does not report this error again
  const std::string msg = std::string("CUDA error on device ") + std::to_string(device) + " while " + what + ": " +
                          cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")" +
                          (tensor.empty() ? "" : " in tensor " + tensor) +
                          (sticky(e) ? "; the GPU context is lost, start a new process" : "");
  throw EngineError(e == cudaErrorMemoryAllocation ? kCodeNoMem : kCodeDevice, msg, {}, tensor);
}

bool cuda_built() { return true; }

CudaInfo cuda_info() {
  CudaInfo info;
  info.built = true;
  info.archs = PMA_CUDA_ARCHS;
  cudaRuntimeGetVersion(&info.runtime_version);
  cudaDriverGetVersion(&info.driver_version);
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    info.error = std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")";
    cudaGetLastError();  // not sticky, but leave nothing behind for the next call
    return info;
  }
  if (count == 0) info.error = "no CUDA device found";
  int current = 0;
  const bool had_current = cudaGetDevice(&current) == cudaSuccess;
  for (int i = 0; i < count; ++i) {
    GpuDevice d;
    d.index = i;
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    d.name = p.name;
    d.cc_major = p.major;
    d.cc_minor = p.minor;
    d.multiprocessors = p.multiProcessorCount;
    d.total_memory = p.totalGlobalMem;
    char bus[32] = {0};
    if (cudaDeviceGetPCIBusId(bus, sizeof bus, i) == cudaSuccess) d.pci_bus_id = bus;
    size_t free = 0, total = 0;
    const cudaError_t ctx = cudaSetDevice(i);
    if (ctx == cudaSuccess && cudaMemGetInfo(&free, &total) == cudaSuccess) d.free_memory = free;
    cudaGetLastError();
    // The real test of the build's targets: whether the device can load one of our kernels.
    const cudaError_t img = ctx == cudaSuccess ? kernel_image_status() : ctx;
    d.usable = img == cudaSuccess;
    if (!d.usable) {
      d.unusable_reason = img == cudaErrorNoKernelImageForDevice || img == cudaErrorInvalidDeviceFunction
                              ? "compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) +
                                    " is not among this build's targets (" + info.archs +
                                    "; rebuild with PMA_CUDA_ARCHS)"
                              : std::string(cudaGetErrorString(img)) + " (" + cudaGetErrorName(img) + ")";
    }
    info.devices.push_back(d);
  }
  if (had_current) cudaSetDevice(current);
  cudaGetLastError();
  return info;
}

}  // namespace pma
