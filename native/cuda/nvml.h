// The few NVML calls pma needs, loaded at run time from the driver's libnvidia-ml.so.1: free memory
// and the driver's release without creating a CUDA context (cudaMemGetInfo needs one). Nothing is
// linked, so a machine without NVML loads the addon fine and reports free memory as unknown (0).
#pragma once
#include <dlfcn.h>

#include <cstdint>
#include <string>

namespace pma {

class Nvml {
 public:
  Nvml() {
    lib_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib_ == nullptr) return;
    init_ = reinterpret_cast<Ret (*)()>(dlsym(lib_, "nvmlInit_v2"));
    shutdown_ = reinterpret_cast<Ret (*)()>(dlsym(lib_, "nvmlShutdown"));
    version_ = reinterpret_cast<Ret (*)(char*, unsigned)>(dlsym(lib_, "nvmlSystemGetDriverVersion"));
    by_bus_ = reinterpret_cast<Ret (*)(const char*, Device*)>(dlsym(lib_, "nvmlDeviceGetHandleByPciBusId_v2"));
    memory_ = reinterpret_cast<Ret (*)(Device, Memory*)>(dlsym(lib_, "nvmlDeviceGetMemoryInfo"));
    ok_ = init_ && shutdown_ && version_ && by_bus_ && memory_ && init_() == 0;
  }
  ~Nvml() {
    if (ok_) shutdown_();
    if (lib_ != nullptr) dlclose(lib_);
  }
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;

  // "550.54.15", or empty when NVML is not there.
  std::string driver_release() const {
    char v[96] = {0};
    return ok_ && version_(v, sizeof v) == 0 ? std::string(v) : std::string();
  }

  // Free bytes of the device at PCI bus id `bus`, or 0 when unknown.
  uint64_t free_memory(const std::string& bus) const {
    Device d = nullptr;
    Memory m{};
    if (!ok_ || bus.empty() || by_bus_(bus.c_str(), &d) != 0 || memory_(d, &m) != 0) return 0;
    return m.free;
  }

 private:
  using Ret = int;  // nvmlReturn_t: 0 is success
  using Device = void*;
  struct Memory {
    unsigned long long total, free, used;  // nvmlMemory_t
  };
  void* lib_ = nullptr;
  bool ok_ = false;
  Ret (*init_)() = nullptr;
  Ret (*shutdown_)() = nullptr;
  Ret (*version_)(char*, unsigned) = nullptr;
  Ret (*by_bus_)(const char*, Device*) = nullptr;
  Ret (*memory_)(Device, Memory*) = nullptr;
};

}  // namespace pma
