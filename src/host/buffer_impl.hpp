// Buffer's private state and the helpers its calls share (stream flow, error checks,
// the collective context every kernel gets). Host-only.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "host/staging.hpp"
#include "kernels/intranode/intranode_params.hpp"
#include "moe_ep/buffer.hpp"
#include "protocol/device_state.hpp"
#include "runtime/device_memory.hpp"
#include "runtime/peer_mapping.hpp"

namespace moe_ep {

struct Buffer::Impl {
  Impl(std::shared_ptr<Group> group, std::int64_t num_nvl_bytes, BufferOptions options);

  std::shared_ptr<Group> group;
  BufferOptions options;
  int rank = 0;
  int num_ranks = 1;
  int device = 0;
  int num_device_sms = 0;
  int ranks_on_device = 1;  // ranks of this group sharing this rank's device
  std::uint64_t id = 0;
  std::uint64_t generation = 0;

  runtime::DeviceGuard guard_for_construction;
  runtime::Stream comm_stream;
  std::unique_ptr<runtime::PeerMapping> nvl;
  protocol::NvlBufferLayout layout;
  runtime::DeviceAllocation state;           // protocol::DeviceState
  runtime::HostMappedAllocation host_state;  // protocol::HostMappedState
  runtime::DeviceAllocation layout_workspace;

  std::string failure;  // non-empty: refuse calls until reset
  FaultInjection fault;
  bool skipping_dispatch = false;

  protocol::DeviceState* device_state() const { return static_cast<protocol::DeviceState*>(state.get()); }
  protocol::HostMappedState* host() const { return static_cast<protocol::HostMappedState*>(host_state.host()); }
  protocol::HostMappedState* host_on_device() const {
    return static_cast<protocol::HostMappedState*>(host_state.device());
  }

  // Refuses calls after a failure and raises errors recorded by earlier async calls.
  void ensure_usable(const std::string& op);
  void raise_recorded_error();
  // Spins on the host-mapped flag the notify kernel sets after the received counts (no
  // stream synchronization on the path); returns once they are readable, raises the
  // recorded error if the kernel failed instead. Bounded by twice the device timeout.
  void wait_for_counts();
  // Consumes one skipped call of fault injection; true when this call must not launch.
  bool consume_skip();

  // Makes the comm stream wait for the caller's work; returns the comm stream.
  cudaStream_t begin(const StreamOptions& s);
  // Ends a call: event on the comm stream; the compute stream waits unless async.
  Event end(const StreamOptions& s);

  kernels::CollectiveContext context(protocol::Op op) const;
  // The staging region of this rank's NVL buffer, for a call named `op`.
  host::StagingArea staging(const std::string& op) const;
  int checked_num_sms(const std::string& op, const Config& config) const;
  void check_handle(const std::string& op, const DispatchHandle& handle) const;
};

}  // namespace moe_ep
