// Host-side checks of the low-latency calls, run before any launch; each failure throws
// InvalidArgument naming the call, the argument, the expectation and the value.
#pragma once
#include <cstdint>
#include <string>

#include "moe_ep/low_latency.hpp"

namespace moe_ep::host {

// The shape every rank of a low-latency call must share, plus this rank's tokens.
struct LowLatencyShape {
  int num_tokens = 0;
  int hidden = 0;
  int num_topk = 0;
  int num_experts = 0;
  int max_tokens = 0;
  int num_ranks = 1;
  int num_local_experts() const { return num_experts / num_ranks; }
  std::int64_t slots_per_expert() const { return static_cast<std::int64_t>(num_ranks) * max_tokens; }
};

LowLatencyShape check_low_latency_dispatch(const std::string& op, int num_ranks, const LowLatencyDispatchArgs& args,
                                           const LowLatencyDispatchOutputs& out, const LowLatencyHandle& handle);
// The shape comes from the handle; the tensors must match it.
LowLatencyShape check_low_latency_combine(const std::string& op, int num_ranks, const LowLatencyCombineArgs& args,
                                          const LowLatencyHandle& handle);

}  // namespace moe_ep::host
