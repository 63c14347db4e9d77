// Test helpers: a typed device array that uploads, downloads and poisons itself, and
// makes TensorViews of its memory. Every CUDA call is checked. All of it is stream-ordered
// on the calling thread's per-thread stream: a plain cudaFree (or cudaMalloc) waits for the
// whole device, so with in-process ranks sharing a GPU it would stall until peers that
// wait for this rank time out.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include <cuda_runtime_api.h>

#include "moe_ep/tensor_view.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::test {

// Byte every poisoned output starts as: 0x5A5A... is no valid id, count or small value.
inline constexpr unsigned char kPoisonByte = 0x5A;

template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t count) : count_(count) {
    if (count_ > 0) {
      MOE_EP_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), count_ * sizeof(T), cudaStreamPerThread));
    }
    poison();
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, cudaStreamPerThread);
  }
  DeviceArray(DeviceArray&& o) noexcept : ptr_(o.ptr_), count_(o.count_) { o.ptr_ = nullptr, o.count_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(count_, o.count_);
    return *this;
  }

  T* get() const { return ptr_; }
  std::size_t size() const { return count_; }
  void upload(const std::vector<T>& host) {
    if (count_ == 0) return;
    MOE_EP_CUDA_CHECK(
        cudaMemcpyAsync(ptr_, host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice, cudaStreamPerThread));
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    if (count_ == 0) return host;
    MOE_EP_CUDA_CHECK(
        cudaMemcpyAsync(host.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost, cudaStreamPerThread));
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
    return host;
  }
  void poison() {
    if (count_ == 0) return;
    MOE_EP_CUDA_CHECK(cudaMemsetAsync(ptr_, kPoisonByte, count_ * sizeof(T), cudaStreamPerThread));
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
  }
  TensorView view(DType dtype, std::initializer_list<std::int64_t> shape) const {
    return TensorView::contiguous(ptr_, dtype, shape);
  }

 private:
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

}  // namespace moe_ep::test
