// Holds rank streams until one host thread opens them, so work that every in-process rank
// enqueued behind the gate starts together: event timings then cover device time only,
// not host launch overhead or the skew of rank threads waking from a barrier. The epoch
// lives in device memory and a one-thread kernel on the gate's own stream writes it, so
// every held stream sees it within a fraction of a microsecond. A hold gives up after a
// bound (a call that blocked on the host while its stream was held); check() raises that.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

#include "runtime/device_memory.hpp"

namespace moe_ep::bench {

class LaunchGate {
 public:
  explicit LaunchGate(std::uint64_t timeout_ns = 2'000'000'000ull);  // on the current device
  // Enqueues a wait until open(epoch) (epochs increase; every rank uses the same ones).
  void hold(cudaStream_t stream, std::uint32_t epoch) const;
  // From one host thread, once every rank has enqueued its hold for `epoch`; stamps the
  // global timer (ns) of the release into `opened_at` (device memory) if given.
  void open(std::uint32_t epoch, std::uint64_t* opened_at = nullptr) const;
  // Throws if a hold gave up waiting (call after synchronizing the held streams).
  void check() const;
  // The global timer (ns) when the latest open() ran on the device (waits for it).
  std::uint64_t last_opened_ns() const;

 private:
  runtime::DeviceAllocation opened_;     // uint32: the last opened epoch
  runtime::DeviceAllocation opened_at_;  // uint64: when it was opened (global timer, ns)
  runtime::HostMappedAllocation expired_;  // uint32: a hold gave up
  runtime::Stream opener_;
  std::uint64_t timeout_ns_;
};

}  // namespace moe_ep::bench
