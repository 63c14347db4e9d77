// Owning RAII handles for device memory, host-mapped (zero-copy) memory, streams and
// device selection. Destructors never throw.
#pragma once
#include <cstddef>

#include <cuda_runtime_api.h>

namespace moe_ep::runtime {

// Sets the current device for a scope, restoring the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

class DeviceAllocation {
 public:
  DeviceAllocation() = default;
  explicit DeviceAllocation(std::size_t bytes);  // zero-filled; OOM names the bytes
  ~DeviceAllocation();
  DeviceAllocation(DeviceAllocation&& other) noexcept;
  DeviceAllocation& operator=(DeviceAllocation&& other) noexcept;
  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Pinned host memory mapped into the device's address space: device code writes, the
// host reads after synchronizing.
class HostMappedAllocation {
 public:
  HostMappedAllocation() = default;
  explicit HostMappedAllocation(std::size_t bytes);
  ~HostMappedAllocation();
  HostMappedAllocation(HostMappedAllocation&& other) noexcept;
  HostMappedAllocation& operator=(HostMappedAllocation&& other) noexcept;
  void* host() const { return host_; }
  void* device() const { return device_; }

 private:
  void* host_ = nullptr;
  void* device_ = nullptr;
};

class Stream {
 public:
  Stream();  // non-blocking, on the current device
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace moe_ep::runtime
