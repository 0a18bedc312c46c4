// The merge kernels. Conversions and the per-element fma chain are the ones the CPU kernels use
// (kernels/convert.h, kernels/element.h), so the bytes match by construction; built without fast
// math and with --fmad=false, so nvcc contracts nothing the contract does not ask for.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/runtime.cuh"
#include "kernels/convert.h"
#include "kernels/element.h"

namespace pma {
namespace {

constexpr int kThreads = 256;
constexpr int kBatch = 8;

template <DType T>
__host__ __device__ constexpr int size_of() {
  return T == DType::F32 ? 4 : 2;
}

// Element v of a 16-byte word of 2- or 4-byte values, widened to f32.
template <DType In>
__device__ __forceinline__ float unpack(const uint4& r, int v) {
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
  if constexpr (In == DType::F32) {
    return bits_f32(w[v]);
  } else {
    const uint16_t h = uint16_t(w[v >> 1] >> (16 * (v & 1)));
    return In == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
  }
}

// Each thread merges one 16-byte word of every input: 8 bf16/f16 or 4 f32 elements per load.
template <DType In, DType Out>
__global__ void __launch_bounds__(kThreads)
    merge_vec(const uint8_t* __restrict__ src, size_t stride, int n, const float* __restrict__ w,
              uint8_t* __restrict__ dst, size_t groups) {
  constexpr int V = 16 / size_of<In>();
  const size_t step = size_t(gridDim.x) * blockDim.x;
  for (size_t g = size_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += step) {
    float acc[V];
#pragma unroll
    for (int v = 0; v < V; ++v) acc[v] = 0.0f;
    // Up to kBatch inputs' words are loaded before any is used, so their loads are in flight
    // together; the fmas still run oldest to newest.
    for (int k0 = 0; k0 < n; k0 += kBatch) {
      uint4 r[kBatch];
#pragma unroll
      for (int q = 0; q < kBatch; ++q) {
        if (k0 + q < n) r[q] = __ldg(reinterpret_cast<const uint4*>(src + size_t(k0 + q) * stride) + g);
      }
#pragma unroll
      for (int q = 0; q < kBatch; ++q) {
        if (k0 + q < n) {
          const float wk = __ldg(w + k0 + q);
#pragma unroll
          for (int v = 0; v < V; ++v) acc[v] = fma32(wk, unpack<In>(r[q], v), acc[v]);
        }
      }
    }
    if constexpr (Out == DType::F32) {
      uint32_t o[V];
#pragma unroll
      for (int v = 0; v < V; ++v) o[v] = f32_out(acc[v]);
      uint4* d = reinterpret_cast<uint4*>(dst) + g * (V / 4);
#pragma unroll
      for (int q = 0; q < V / 4; ++q) d[q] = make_uint4(o[4 * q], o[4 * q + 1], o[4 * q + 2], o[4 * q + 3]);
    } else {
      uint32_t o[V / 2];
#pragma unroll
      for (int q = 0; q < V / 2; ++q) {
        const uint16_t lo = Out == DType::BF16 ? f32_to_bf16(acc[2 * q]) : f32_to_f16(acc[2 * q]);
        const uint16_t hi = Out == DType::BF16 ? f32_to_bf16(acc[2 * q + 1]) : f32_to_f16(acc[2 * q + 1]);
        o[q] = uint32_t(lo) | (uint32_t(hi) << 16);
      }
      if constexpr (V == 8) {
        reinterpret_cast<uint4*>(dst)[g] = make_uint4(o[0], o[1], o[2], o[3]);
      } else {
        reinterpret_cast<uint2*>(dst)[g] = make_uint2(o[0], o[1]);
      }
    }
  }
}

// Every other case (f64 anywhere, f64 accumulation) and the tails of the vector kernel.
__global__ void __launch_bounds__(kThreads) merge_any(DeviceMerge m) {
  const size_t step = size_t(gridDim.x) * blockDim.x;
  for (size_t j = size_t(blockIdx.x) * blockDim.x + threadIdx.x; j < m.count; j += step) {
    merge_element(m.src, m.stride, m.n, m.w32, m.w64, m.acc_f64, m.in, m.out, m.dst, j);
  }
}

unsigned grid_for(size_t items, int multiprocessors) {
  const size_t want = (items + kThreads - 1) / kThreads;
  // One wave: 8 blocks of 256 threads fill an SM (2048 threads); the grid-stride loop does the rest.
  const size_t cap = size_t(std::max(multiprocessors, 1)) * 8;
  return unsigned(std::max<size_t>(1, std::min(want, cap)));
}

template <DType In, DType Out>
void launch_vec(const DeviceMerge& m, size_t groups, cudaStream_t s, int sms) {
  merge_vec<In, Out><<<grid_for(groups, sms), kThreads, 0, s>>>(m.src, m.stride, m.n, m.w32, m.dst, groups);
}

template <DType In>
void launch_vec_in(const DeviceMerge& m, size_t groups, cudaStream_t s, int sms) {
  switch (m.out) {
    case DType::BF16: launch_vec<In, DType::BF16>(m, groups, s, sms); break;
    case DType::F16: launch_vec<In, DType::F16>(m, groups, s, sms); break;
    default: launch_vec<In, DType::F32>(m, groups, s, sms); break;
  }
}

bool vectorisable(const DeviceMerge& m) {
  const bool narrow_in = m.in != DType::F64, narrow_out = m.out != DType::F64;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return !m.acc_f64 && narrow_in && narrow_out && m.stride % 16 == 0 && aligned(m.src) && aligned(m.dst);
}

}  // namespace

cudaError_t kernel_image_status() {
  cudaFuncAttributes a{};
  const cudaError_t e = cudaFuncGetAttributes(&a, merge_any);
  cudaGetLastError();
  return e;
}

void launch_merge(const DeviceMerge& m, cudaStream_t s, int sms) {
  if (m.count == 0) return;
  size_t first = 0;
  if (vectorisable(m)) {
    const size_t v = 16 / dtype_size(m.in);
    const size_t groups = m.count / v;
    if (groups > 0) {
      switch (m.in) {
        case DType::BF16: launch_vec_in<DType::BF16>(m, groups, s, sms); break;
        case DType::F16: launch_vec_in<DType::F16>(m, groups, s, sms); break;
        default: launch_vec_in<DType::F32>(m, groups, s, sms); break;
      }
    }
    first = groups * v;
  }
  if (first < m.count) {
    DeviceMerge t = m;
    t.src = m.src + first * dtype_size(m.in);
    t.dst = m.dst + first * dtype_size(m.out);
    t.count = m.count - first;
    merge_any<<<grid_for(t.count, sms), kThreads, 0, s>>>(t);
  }
}

}  // namespace pma
