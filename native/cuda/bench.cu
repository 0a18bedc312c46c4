// The GPU measurement hooks: merge of host buffers (tests) and kernel / copy bandwidths (bench).
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "cuda/cuda.h"
#include "cuda/runtime.cuh"
#include "errors.h"

namespace pma {
namespace {

// Device memory freed on every exit path.
struct DevBuf {
  void* p = nullptr;
  DevBuf(size_t n, int dev, const char* what) { cuda_check(cudaMalloc(&p, std::max<size_t>(n, 1)), dev, what); }
  ~DevBuf() { cudaFree(p); }
  uint8_t* bytes() const { return static_cast<uint8_t*>(p); }
};

struct HostBuf {
  void* p = nullptr;
  HostBuf(size_t n, int dev, const char* what) { cuda_check(cudaMallocHost(&p, std::max<size_t>(n, 1)), dev, what); }
  ~HostBuf() { cudaFreeHost(p); }
};

struct Timer {
  cudaEvent_t a = nullptr, b = nullptr;
  int dev;
  explicit Timer(int d) : dev(d) {
    cuda_check(cudaEventCreate(&a), dev, "creating an event");
    cuda_check(cudaEventCreate(&b), dev, "creating an event");
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  // Median milliseconds of `iters` runs of f on the default stream.
  template <typename F>
  double median_ms(int iters, F f) {
    std::vector<float> t;
    for (int i = 0; i < iters; ++i) {
      cuda_check(cudaEventRecord(a), dev, "timing");
      f();
      cuda_check(cudaEventRecord(b), dev, "timing");
      cuda_check(cudaEventSynchronize(b), dev, "timing");
      float ms = 0;
      cuda_check(cudaEventElapsedTime(&ms, a, b), dev, "timing");
      t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return double(t[t.size() / 2]);
  }
};

__global__ void fill(uint32_t* p, size_t words, uint32_t seed) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < words; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t x = uint32_t(i) * 2654435761u ^ seed;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    p[i] = x & 0xBFFFBFFFu;  // clear the top exponent bits of each half: finite values
  }
}

int sm_count(int dev) {
  int sms = 1;
  cuda_check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), dev, "querying the device");
  return sms;
}

}  // namespace

void merge_cuda(int dev, const MergeArgs& a) {
  cuda_check(cudaSetDevice(dev), dev, "selecting the device");
  const size_t is = dtype_size(a.in), os = dtype_size(a.out);
  const size_t stride = (a.count * is + 255) / 256 * 256;
  DevBuf src(size_t(a.n) * stride, dev, "allocating inputs");
  DevBuf dst(a.count * os, dev, "allocating the output");
  DevBuf w32(size_t(a.n) * sizeof(float), dev, "allocating weights");
  DevBuf w64(size_t(a.n) * sizeof(double), dev, "allocating weights");
  for (int k = 0; k < a.n; ++k) {
    cuda_check(cudaMemcpy(src.bytes() + size_t(k) * stride, a.src[k], a.count * is, cudaMemcpyHostToDevice), dev,
               "copying inputs");
  }
  cuda_check(cudaMemcpy(w32.p, a.w32, size_t(a.n) * sizeof(float), cudaMemcpyHostToDevice), dev, "copying weights");
  cuda_check(cudaMemcpy(w64.p, a.w64, size_t(a.n) * sizeof(double), cudaMemcpyHostToDevice), dev, "copying weights");
  DeviceMerge m;
  m.src = src.bytes();
  m.stride = stride;
  m.n = a.n;
  m.w32 = static_cast<const float*>(w32.p);
  m.w64 = static_cast<const double*>(w64.p);
  m.acc_f64 = a.acc_f64;
  m.in = a.in;
  m.out = a.out;
  m.dst = dst.bytes();
  m.count = a.count;
  launch_merge(m, nullptr, sm_count(dev));
  cuda_check(cudaGetLastError(), dev, "launching the merge kernel");
  cuda_check(cudaMemcpy(a.dst, dst.p, a.count * os, cudaMemcpyDeviceToHost), dev, "copying results");
}

GpuBenchResult cuda_bench(int dev, DType in, DType out, int n, uint64_t count, int iters) {
  if (n < 1 || count < 1 || iters < 1) {
    throw EngineError(kCodeInternal, "cuda_bench needs inputs, elements and iterations >= 1");
  }
  cuda_check(cudaSetDevice(dev), dev, "selecting the device");
  const size_t is = dtype_size(in), os = dtype_size(out);
  const size_t stride = (size_t(count) * is + 255) / 256 * 256;
  const size_t traffic = size_t(n) * size_t(count) * is + size_t(count) * os;
  DevBuf src(size_t(n) * stride, dev, "allocating inputs");
  DevBuf dst(size_t(count) * os, dev, "allocating the output");
  std::vector<float> w32(size_t(n), 1.0f / float(n));
  std::vector<double> w64(size_t(n), 1.0 / double(n));
  DevBuf dw32(size_t(n) * 4, dev, "allocating weights");
  DevBuf dw64(size_t(n) * 8, dev, "allocating weights");
  cuda_check(cudaMemcpy(dw32.p, w32.data(), size_t(n) * 4, cudaMemcpyHostToDevice), dev, "copying weights");
  cuda_check(cudaMemcpy(dw64.p, w64.data(), size_t(n) * 8, cudaMemcpyHostToDevice), dev, "copying weights");
  const int sms = sm_count(dev);
  fill<<<sms * 8, 256>>>(static_cast<uint32_t*>(src.p), size_t(n) * stride / 4, 12345u);
  cuda_check(cudaDeviceSynchronize(), dev, "filling inputs");

  DeviceMerge m;
  m.src = src.bytes();
  m.stride = stride;
  m.n = n;
  m.w32 = static_cast<const float*>(dw32.p);
  m.w64 = static_cast<const double*>(dw64.p);
  m.in = in;
  m.out = out;
  m.dst = dst.bytes();
  m.count = size_t(count);
  Timer timer(dev);
  launch_merge(m, nullptr, sms);  // warm-up
  cuda_check(cudaDeviceSynchronize(), dev, "warming up");
  GpuBenchResult r;
  const double kernel_ms = timer.median_ms(iters, [&] { launch_merge(m, nullptr, sms); });
  cuda_check(cudaGetLastError(), dev, "running the merge kernel");
  r.kernel_gbps = double(traffic) / (kernel_ms * 1e6);

  // The same traffic as a copy: half the bytes read, half written.
  const size_t half = traffic / 2;
  DevBuf a(half, dev, "allocating the copy source"), b(half, dev, "allocating the copy target");
  cuda_check(cudaMemcpy(b.p, a.p, half, cudaMemcpyDeviceToDevice), dev, "warming up");
  const double copy_ms =
      timer.median_ms(iters, [&] { cudaMemcpyAsync(b.p, a.p, half, cudaMemcpyDeviceToDevice, nullptr); });
  r.copy_gbps = double(2 * half) / (copy_ms * 1e6);

  const size_t hbytes = std::min<size_t>(half, size_t(256) << 20);
  HostBuf h(hbytes, dev, "allocating pinned memory");
  cuda_check(cudaMemcpy(a.p, h.p, hbytes, cudaMemcpyHostToDevice), dev, "warming up");
  const double h2d_ms =
      timer.median_ms(iters, [&] { cudaMemcpyAsync(a.p, h.p, hbytes, cudaMemcpyHostToDevice, nullptr); });
  const double d2h_ms =
      timer.median_ms(iters, [&] { cudaMemcpyAsync(h.p, a.p, hbytes, cudaMemcpyDeviceToHost, nullptr); });
  r.h2d_gbps = double(hbytes) / (h2d_ms * 1e6);
  r.d2h_gbps = double(hbytes) / (d2h_ms * 1e6);
  return r;
}

}  // namespace pma
