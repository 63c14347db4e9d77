// Synchronization built on any transport's signals: a bounded wait for a signal slot to
// reach a value (recording which rank, phase and peer timed out, never trapping), and a
// barrier over every rank of the transport.
#pragma once
#include <cstdint>

#include "device/sync.cuh"

namespace moe_ep::transport {

// One thread. True once the own slot `slot` holds at least `at_least`.
template <typename Transport>
__device__ __forceinline__ bool wait_signal(const Transport& t, int slot, std::uint64_t at_least,
                                            std::uint64_t timeout_ns, protocol::ErrorRecord* error,
                                            protocol::Phase phase, int peer) {
  const std::uint64_t start = device::global_timer_ns();
  std::uint64_t seen = t.read_signal(slot);
  while (seen < at_least) {
    if (device::global_timer_ns() - start > timeout_ns) {
      device::record_error(error, protocol::ErrorCode::kTimeout, t.topology.rank, phase, peer,
                           static_cast<std::int64_t>(protocol::make_tag(at_least, protocol::Op::kTransport)),
                           static_cast<std::int64_t>(protocol::make_tag(seen, protocol::Op::kTransport)),
                           static_cast<std::int64_t>(start), protocol::kPeerEntryUnknown);
      return false;
    }
    seen = t.read_signal(slot);
  }
  return true;
}

// Whole block. Barrier number `epoch` (1, 2, ...) over every rank; slot `slot` counts
// arrivals and must serve no other purpose. False if a peer did not arrive in time.
template <typename Transport>
__device__ __forceinline__ bool transport_barrier(const Transport& t, int slot, std::uint64_t epoch,
                                                  std::uint64_t timeout_ns, protocol::ErrorRecord* error,
                                                  protocol::Phase phase) {
  __shared__ bool ok;
  __syncthreads();  // the block's earlier puts are issued before any arrival
  const int n = t.topology.num_ranks;
  for (int q = threadIdx.x; q < n; q += blockDim.x) t.signal_add(q, slot, 1);
  if (threadIdx.x == 0) {
    ok = wait_signal(t, slot, epoch * static_cast<std::uint64_t>(n), timeout_ns, error, phase, -1);
  }
  __syncthreads();
  return ok;
}

}  // namespace moe_ep::transport
