// Host side of the memory-backed transports: one peer-mapped window per rank (signal slots
// first, then `window_bytes` of payload) over ranks that can map each other's memory (one
// process, or CUDA IPC within a node), and the topology that splits them into nodes.
#pragma once
#include <cstdint>

#include "moe_ep/group.hpp"
#include "runtime/peer_mapping.hpp"
#include "transport/transport_layout.hpp"

namespace moe_ep::transport {

class MemoryTransportHost {
 public:
  // Collective over `group`. ranks_per_node must divide the group size; with kPeerMemory
  // it is the group size (one NVLink domain).
  MemoryTransportHost(Group& group, TransportKind kind, std::int64_t window_bytes, int ranks_per_node);

  TransportKind kind() const { return kind_; }
  const TransportTopology& topology() const { return windows_.topology; }
  // Payload bytes after the signal slots.
  std::int64_t window_bytes() const { return windows_.window_bytes - kSignalBytes; }
  // The own window as this process sees it (signal slots first).
  std::uint8_t* local_window() const { return windows_.bases[windows_.topology.rank]; }
  // What kernels build PeerMemoryTransport / EmulatedRdmaTransport from.
  const MemoryWindows& windows() const { return windows_; }

 private:
  TransportKind kind_;
  runtime::PeerMapping mapping_;
  MemoryWindows windows_{};
};

}  // namespace moe_ep::transport
