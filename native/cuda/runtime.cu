// Device discovery and CUDA error translation. cudart is linked statically, so a machine with no
// driver loads the addon fine: the first runtime call reports the missing driver as an error code.
#include <cuda_runtime.h>

#include <string>

#include "cuda/cuda.h"
#include "cuda/nvml.h"
#include "cuda/runtime.cuh"
#include "errors.h"

#ifndef PMA_CUDA_ARCHS
#define PMA_CUDA_ARCHS "unknown"
#endif

namespace pma {

namespace {
// Errors after which the CUDA context of the process is unusable: every later call fails too, so
// the only way on is a new process (and, for the hardware ones, perhaps a GPU reset).
bool sticky(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorLaunchTimeout:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidPc:
    case cudaErrorHardwareStackError:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
    case cudaErrorNvlinkUncorrectable:
#if CUDART_VERSION >= 12000
    case cudaErrorContained:
#endif
      return true;
    default: return false;
  }
}
}  // namespace

void cuda_check(cudaError_t e, int device, const char* what, const std::string& tensor) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear it, so that a later launch check does not report this error again
  const std::string msg = std::string("CUDA error on device ") + std::to_string(device) + " while " + what + ": " +
                          cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")" +
                          (tensor.empty() ? "" : " in tensor " + tensor) +
                          (sticky(e) ? "; the GPU context of this process is lost: start a new process (the merge "
                                       "resumes where it stopped)"
                                     : "");
  throw EngineError(e == cudaErrorMemoryAllocation ? kCodeNoMem : kCodeDevice, msg, {}, tensor);
}

bool cuda_built() { return true; }

// Properties only: no cudaSetDevice, no allocation, no kernel load, so no CUDA context is created
// on any GPU (a context costs hundreds of MiB of the GPU's memory and a second or so per GPU, on
// GPUs a trainer may be using). Free memory and the driver's release come from NVML when the
// driver ships it. Whether a device can run this build's kernels is decided from its compute
// capability and the build's targets (src/run/cuda-compat.ts), and tested for real when a merge
// first uses the device (check_kernel_image).
CudaInfo cuda_info() {
  CudaInfo info;
  info.built = true;
  info.archs = PMA_CUDA_ARCHS;
  cudaRuntimeGetVersion(&info.runtime_version);
  cudaDriverGetVersion(&info.driver_version);
  Nvml nvml;
  info.driver_release = nvml.driver_release();
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    info.error = std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")";
    cudaGetLastError();  // not sticky, but leave nothing behind for the next call
    return info;
  }
  if (count == 0) info.error = "no CUDA device found";
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
    d.free_memory = nvml.free_memory(d.pci_bus_id);
    info.devices.push_back(d);
  }
  cudaGetLastError();
  return info;
}

void check_kernel_image(int device) {
  const cudaError_t img = kernel_image_status();
  if (img == cudaSuccess) return;
  cudaGetLastError();
  if (img != cudaErrorNoKernelImageForDevice && img != cudaErrorInvalidDeviceFunction &&
      img != cudaErrorUnsupportedPtxVersion) {
    cuda_check(img, device, "loading the merge kernel");
  }
  cudaDeviceProp p{};
  cudaGetDeviceProperties(&p, device);
  cudaGetLastError();
  throw EngineError(kCodeUnsupported, "CUDA device " + std::to_string(device) + " (" + p.name +
                                          ", compute capability " + std::to_string(p.major) + "." +
                                          std::to_string(p.minor) + ") cannot run this build's kernels (built for " +
                                          PMA_CUDA_ARCHS + "): " + cudaGetErrorString(img) +
                                          "; rebuild with PMA_CUDA_ARCHS=" + std::to_string(p.major) +
                                          std::to_string(p.minor) + "-real");
}

}  // namespace pma
