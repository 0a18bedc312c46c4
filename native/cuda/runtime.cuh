// CUDA runtime helpers shared by the CUDA sources: error translation and the kernel launcher.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "dtype.h"

namespace pma {

// Throws an EngineError naming the device and what was being done (kCodeNoMem for allocations, else kCodeDevice).
void cuda_check(cudaError_t e, int device, const char* what, const std::string& tensor = {});

// A merge on device memory: n inputs of `count` elements, input k at src + k * stride.
struct DeviceMerge {
  const uint8_t* src = nullptr;
  size_t stride = 0;
  int n = 0;
  const float* w32 = nullptr;
  const double* w64 = nullptr;
  bool acc_f64 = false;
  DType in = DType::F32;
  DType out = DType::F32;
  uint8_t* dst = nullptr;
  size_t count = 0;
};

// cudaSuccess when the current device can run this build's kernels (its architecture is among the
// build's targets, or PTX for it can be compiled), else the error that says why not.
cudaError_t kernel_image_status();

// Throws E_UNSUPPORTED, naming the device and its compute capability, when the current device
// (`device`) cannot run this build's kernels: called once per device, when a merge first uses it.
void check_kernel_image(int device);

// Enqueues the merge on `stream`; `multiprocessors` sizes the grid.
void launch_merge(const DeviceMerge& m, cudaStream_t stream, int multiprocessors);

}  // namespace pma
