// Host side of the GIN transport: an NCCL communicator over the group, one symmetric
// window per rank (NCCL memory, registered with ncclCommWindowRegister) and a device
// communicator with GIN signals. Construction and destruction are collective (NCCL
// registers and deregisters the window with every rank). A machine without GIN (no RDMA
// NIC) throws std::runtime_error "... needs an RDMA NIC; ncclDevCommCreate said: ...".
#pragma once
#include <cstdint>

#include <nccl.h>
#include <nccl_device/core.h>
#include <nccl_device/impl/comm__types.h>

#include "moe_ep/group.hpp"
#include "runtime/device_memory.hpp"
#include "transport/transport_layout.hpp"

namespace moe_ep::transport {

// The GIN transport as one rank's kernels get it: a __grid_constant__ parameter that
// gin_transport() (gin_transport.cuh) turns into the device transport.
struct GinWindows {
  ncclDevComm dev_comm;  // GIN keeps a reference to it: it must stay in parameter memory
  ncclWindow_t window;   // this rank's registration of the symmetric window
  std::uint8_t* local_base;  // the own window in device memory (kernels read what peers put)
  // [num_ranks, num_signals] on this GPU: the last value signal_set gave (peer, slot).
  std::uint64_t* set_values;
  std::int64_t window_bytes;  // unused signal region included, as MemoryWindows
  TransportTopology topology;
  int num_signals;
};

class GinTransportHost {
 public:
  // window_bytes: payload bytes per rank, a multiple of 16 (the window starts with
  // kSignalBytes unused, so payload offsets match the memory transports). ranks_per_node
  // divides the group size; num_signals in [1, kMaxSignals].
  GinTransportHost(Group& group, std::int64_t window_bytes, int ranks_per_node, int num_signals);
  ~GinTransportHost();
  GinTransportHost(const GinTransportHost&) = delete;
  GinTransportHost& operator=(const GinTransportHost&) = delete;

  const TransportTopology& topology() const { return windows_.topology; }
  // Payload bytes after the (unused) signal region.
  std::int64_t window_bytes() const { return windows_.window_bytes - kSignalBytes; }
  // The own window (device memory), unused signal region first.
  std::uint8_t* local_window() const { return static_cast<std::uint8_t*>(window_base_); }
  // What kernels take by value and build GinTransport from.
  const GinWindows& windows() const { return windows_; }

 private:
  void create_dev_comm(int num_signals);
  // Frees what exists; `abort` tears the communicator down without waiting for peers.
  void release(bool abort) noexcept;

  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  void* window_base_ = nullptr;
  bool dev_comm_created_ = false;
  runtime::DeviceAllocation set_values_;  // GinWindows::set_values
  GinWindows windows_{};
};

}  // namespace moe_ep::transport
