// Holds rank streams until one host thread opens them, so work that every in-process rank
// enqueued behind the gate starts together: event timings then cover device time only,
// not host launch overhead or the skew of rank threads waking from a barrier. The epoch
// lives in device memory and a one-thread kernel on the gate's own stream writes it, so
// every held stream sees it within a fraction of a microsecond. A hold gives up after a
// bound (a call that blocked on the host while its stream was held); check() raises that.
// Each holder (a rank's stream) counts its own holds on the device (its n-th hold waits for
// epoch n), so a hold captured in a CUDA graph waits for the next epoch at every replay.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

#include "runtime/device_memory.hpp"

namespace moe_ep::bench {

class LaunchGate {
 public:
  // On the current device, for holders 0 .. num_holders - 1.
  explicit LaunchGate(int num_holders, std::uint64_t timeout_ns = 2'000'000'000ull);
  // Enqueues the holder's next hold: its n-th (from 1) waits until open(n). Every holder
  // holds once per open, so the host's epoch count matches each holder's.
  void hold(cudaStream_t stream, int holder) const;
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
  runtime::DeviceAllocation holds_;      // uint32 [holder]: the holds enqueued so far
  int num_holders_;
  runtime::HostMappedAllocation expired_;  // uint32: a hold gave up
  runtime::Stream opener_;
  std::uint64_t timeout_ns_;
};

}  // namespace moe_ep::bench
