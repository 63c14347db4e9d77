// Test helpers: a typed device array that uploads, downloads and poisons itself, and
// makes TensorViews of its memory. Every CUDA call is checked. All of it is stream-ordered
// on the calling thread's per-thread stream: a plain cudaFree (or cudaMalloc) waits for the
// whole device, so with in-process ranks sharing a GPU it would stall until peers that
// wait for this rank time out.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
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
  // Copies `bytes` from the host into the start of the array (the rest keeps its contents).
  void upload_prefix(const void* host, std::size_t bytes) const {
    if (bytes == 0) return;
    if (bytes > count_ * sizeof(T)) {
      throw std::invalid_argument("test: upload of " + std::to_string(bytes) + " bytes into an array of " +
                                  std::to_string(count_ * sizeof(T)));
    }
    MOE_EP_CUDA_CHECK(cudaMemcpyAsync(ptr_, host, bytes, cudaMemcpyHostToDevice, cudaStreamPerThread));
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
  }
  TensorView view(DType dtype, std::initializer_list<std::int64_t> shape) const {
    return TensorView::contiguous(ptr_, dtype, shape);
  }

 private:
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

// Bitwise equality of two downloaded outputs; on the first difference (if none is
// recorded yet) writes which element of `name` differs into *first_difference.
template <typename T>
bool same_bytes(const char* name, const std::vector<T>& a, const std::vector<T>& b, std::string* first_difference) {
  if (a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0)) return true;
  if (first_difference != nullptr && first_difference->empty()) {
    std::size_t i = 0;
    while (i < a.size() && i < b.size() && std::memcmp(&a[i], &b[i], sizeof(T)) == 0) ++i;
    *first_difference = std::string(name) + " differs at element " + std::to_string(i) + " (sizes " +
                        std::to_string(a.size()) + ", " + std::to_string(b.size()) + ")";
  }
  return false;
}

}  // namespace moe_ep::test
