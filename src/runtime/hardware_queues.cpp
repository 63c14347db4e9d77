// Requests CUDA's maximum of hardware queues at load time (see hardware_queues.hpp).
#include "runtime/hardware_queues.hpp"

#include <cstdlib>
#include <string>

namespace moe_ep::runtime {

void request_hardware_queues() {
  setenv("CUDA_DEVICE_MAX_CONNECTIONS", std::to_string(kWantedHardwareQueues).c_str(), /*overwrite=*/0);
  // Lazy module loading can make a rank's first launch of a kernel wait for the device,
  // while peers' kernels spin waiting for that rank: load every kernel with the context.
  setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/0);
}

int configured_hardware_queues() {
  const char* value = std::getenv("CUDA_DEVICE_MAX_CONNECTIONS");
  return value == nullptr ? 8 : std::atoi(value);
}

}  // namespace moe_ep::runtime
