// Per-rank state in local device memory (not peer-visible): the operation epoch that
// keeps flags monotonic without host involvement (so calls are graph-capturable), the
// abort flag a failed phase sets for the phases after it, and the last-block tickets.
#pragma once
#include <cstdint>
#include <type_traits>

#include "moe_ep/config.hpp"
#include "protocol/error_record.hpp"

namespace moe_ep::protocol {

struct DeviceState {
  std::uint64_t epoch;          // operations completed; an op runs as epoch + 1
  std::uint32_t abort;          // nonzero: a phase of the current op failed
  std::uint32_t receive_ticket; // blocks of the receive/reduce kernel that finished
  std::uint32_t layout_ticket;  // blocks of the layout kernel that finished
  std::uint32_t reserved;
  // Low latency, per half of the LL region (ops on the two halves may overlap):
  std::uint64_t ll_epoch[2];        // ops completed on that half
  std::uint64_t ll_plan_ready[2];   // dispatch receive: (epoch << 16 | arrived << 1 | failed) of the plan
  std::uint32_t ll_send_ticket[2];  // blocks of the running send phase that finished
  std::uint32_t ll_ticket[2];       // blocks of the running receive phase that finished (done barrier)
  std::int32_t ll_masked[kMaxNvlRanks];  // nonzero: that peer is masked (enable_shrink)
  // Internode high throughput: calls begun (dispatch, combine), which each signal slot
  // counts; and the last-block ticket of the kernel that signals after all its puts.
  std::uint64_t internode_calls[2];
  std::uint32_t internode_ticket;
  std::uint32_t reserved2;
};
static_assert(std::is_trivially_copyable_v<DeviceState>);

// Host-mapped: the error record and the counts the host reads after the counting phase.
struct HostMappedState {
  ErrorRecord error;
  std::int32_t num_recv_tokens;
  std::int32_t counts_ready;    // set by notify after the counts, when the host waits for them
  std::int32_t num_forward_rows;  // internode: tokens this rank relays to its node
  std::int32_t reserved;
  std::int32_t num_recv_tokens_per_expert[kMaxExperts];  // local experts, aligned
};
static_assert(std::is_trivially_copyable_v<HostMappedState>);

}  // namespace moe_ep::protocol
