// Process-level CUDA facts and settings the Python package needs before any Buffer exists:
// device count and current device (no torch needed), the kernels' architectures, limits,
// and keep_pool_memory (the pool rule of in-process ranks sharing one GPU, see README).
#include <cstdint>
#include <string>

#include "bindings.hpp"
#include "moe_ep/config.hpp"
#include "moe_ep/errors.hpp"

namespace moe_ep::bindings {
namespace {

int num_cuda_devices() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device"/"no driver" status
    return 0;
  }
  return count;
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw CudaError(std::string(what) + ": " + cudaGetErrorString(status));
}

int current_device() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  return device;
}

// Memory freed to the device's default pool stays there: trimming it at a synchronization
// point can wait for the whole device, i.e. for peers spinning on this rank.
void keep_pool_memory(int device) {
  cudaMemPool_t pool = nullptr;
  check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
  std::uint64_t never = ~std::uint64_t{0};
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &never), "cudaMemPoolSetAttribute");
}

}  // namespace

void bind_device(nb::module_& m) {
  m.def("num_cuda_devices", &num_cuda_devices, "CUDA devices visible to this process (0 without a device or driver).");
  m.def("current_device", &current_device, "The calling thread's current CUDA device.");
  m.def("keep_pool_memory", &keep_pool_memory, nb::arg("device"),
        "Sets the device's default memory pool release threshold to the maximum.");
  m.attr("cuda_architectures") = MOE_EP_CUDA_ARCHITECTURES;
  m.attr("DEFAULT_TIMEOUT_NS") = kDefaultTimeoutNs;
  m.attr("MAX_NVL_RANKS") = kMaxNvlRanks;
  m.attr("MAX_TOPK") = kMaxTopk;
  m.attr("MAX_EXPERTS") = kMaxExperts;
}

}  // namespace moe_ep::bindings
