// CUDA multiplexes streams onto CUDA_DEVICE_MAX_CONNECTIONS hardware queues (default 8).
// Kernels of streams that share a queue are serialized, so with in-process ranks sharing
// a GPU, one rank's spinning kernel can block a peer's kernel queued behind it until the
// bounded wait expires. Every in-process rank needs its own queues for its streams.
#pragma once

namespace moe_ep::runtime {

inline constexpr int kWantedHardwareQueues = 32;  // the CUDA maximum

// Sets CUDA_DEVICE_MAX_CONNECTIONS=32 unless the user set it. Effective only before the
// process creates its CUDA context (it runs from a static initializer of the library).
void request_hardware_queues();
// The value in the environment (CUDA's default 8 when unset).
int configured_hardware_queues();

}  // namespace moe_ep::runtime
