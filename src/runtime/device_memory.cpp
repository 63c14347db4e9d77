// RAII wrappers over cudaMalloc / cudaHostAlloc / streams.
#include "runtime/device_memory.hpp"

#include <cstring>
#include <string>
#include <utility>

#include "runtime/cuda_check.hpp"

namespace moe_ep::runtime {

DeviceGuard::DeviceGuard(int device) {
  MOE_EP_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) MOE_EP_CUDA_CHECK(cudaSetDevice(device));
}
DeviceGuard::~DeviceGuard() {
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
}

DeviceAllocation::DeviceAllocation(std::size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  cudaError_t status = cudaMalloc(&ptr_, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free OOM error
    throw CudaError("device out of memory: cudaMalloc of " + std::to_string(bytes) + " bytes failed (" +
                    cudaGetErrorString(status) + ")");
  }
  MOE_EP_CUDA_CHECK(cudaMemset(ptr_, 0, bytes));
  // cudaMemset runs on the legacy stream, which kernels on non-blocking streams do not
  // wait for: a peer could signal into this memory before the zeros land (or see stale
  // flags of a freed buffer at the same address). Wait for the zeros.
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
}
DeviceAllocation::~DeviceAllocation() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}
DeviceAllocation::DeviceAllocation(DeviceAllocation&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
DeviceAllocation& DeviceAllocation::operator=(DeviceAllocation&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

HostMappedAllocation::HostMappedAllocation(std::size_t bytes) {
  MOE_EP_CUDA_CHECK(cudaHostAlloc(&host_, bytes, cudaHostAllocMapped | cudaHostAllocPortable));
  MOE_EP_CUDA_CHECK(cudaHostGetDevicePointer(&device_, host_, 0));
  std::memset(host_, 0, bytes);
}
HostMappedAllocation::~HostMappedAllocation() {
  if (host_ != nullptr) cudaFreeHost(host_);
}
HostMappedAllocation::HostMappedAllocation(HostMappedAllocation&& other) noexcept
    : host_(std::exchange(other.host_, nullptr)), device_(std::exchange(other.device_, nullptr)) {}
HostMappedAllocation& HostMappedAllocation::operator=(HostMappedAllocation&& other) noexcept {
  if (this != &other) {
    if (host_ != nullptr) cudaFreeHost(host_);
    host_ = std::exchange(other.host_, nullptr);
    device_ = std::exchange(other.device_, nullptr);
  }
  return *this;
}

Stream::Stream() { MOE_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
Stream::~Stream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

}  // namespace moe_ep::runtime
