// Arguments of the low-latency (decode) calls: fixed-size per-expert slots, no host
// synchronization, capturable in CUDA graphs, and an optional receive hook so the
// receiving half runs only when the caller asks for it.
//
// Data flow (see src/kernels/low_latency/README.md): each rank casts (FP8) or copies its
// tokens once into its own buffer and signals; every receiver pulls each token it needs
// once (however many of its experts the token names) and expands it into the per-expert
// slots. Slots of one expert are ordered by (source rank, source token), so the layout is
// deterministic. Combine pulls each (token, expert) row from the expert's owner and sums
// it with the top-k weight on the token's home rank.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

#include "moe_ep/event.hpp"
#include "moe_ep/intranode.hpp"
#include "moe_ep/tensor_view.hpp"

namespace moe_ep {

// Largest num_max_dispatch_tokens_per_rank a low-latency call accepts.
inline constexpr int kMaxLowLatencyTokens = 1024;

// What a low-latency dispatch leaves for combine. Caller-owned views, same shapes as
// deep_ep's handle plus combine_slots (where this rank's own tokens sit in the owners').
struct LowLatencyHandle {
  TensorView src_info;       // [num_local_experts, num_ranks * max_tokens] int32: source token
                             // index of each slot below recv_count (the rest left as it was)
  TensorView layout_range;   // [num_local_experts, num_ranks] int64: (count << 32) | begin of
                             // the rows each source rank sent to that expert
  TensorView combine_slots;  // [max_tokens, num_topk] int32: for this rank's token t and slot k,
                             // its index among the rows this rank sent to that expert (the
                             // owner's row is begin (from its layout_range) + this), -1 for holes
  // combine_slots hold the owner's row itself (begin included): set by a dispatch that wrote
  // into the owners' outputs (every rank in this process on this GPU), so combine needs no
  // owner's layout_range.
  bool absolute_slots = false;
  int num_max_dispatch_tokens_per_rank = 0;
  int hidden = 0;
  int num_experts = 0;
  int num_topk = 0;
  int num_tokens = 0;        // this rank's tokens in the dispatch
  std::uint64_t buffer_id = 0;
  std::uint64_t buffer_generation = 0;
};

struct LowLatencyDispatchArgs {
  TensorView x;                                   // [num_tokens, hidden] bf16, hidden % 128 == 0
  TensorView topk_idx;                            // [num_tokens, num_topk] int64 or int32, -1 = none
  int num_max_dispatch_tokens_per_rank = 0;       // every rank passes the same value
  int num_experts = 0;
  TensorView cumulative_local_expert_recv_stats;  // optional [num_local_experts] int32, += recv_count
  TensorView dispatch_wait_recv_cost_stats;       // optional [num_ranks] int64, += ns waited per source
  bool use_fp8 = true;
  bool round_scale = false;                       // power-of-two scales
  bool use_ue8m0 = false;                         // packed UE8M0 scales (needs round_scale)
  bool return_recv_hook = false;                  // only send now; the hook receives
  StreamOptions stream;                           // previous_event is not used by LL calls
};

// Caller-allocated outputs of a low-latency dispatch (E = num_local_experts,
// N = num_ranks * num_max_dispatch_tokens_per_rank).
struct LowLatencyDispatchOutputs {
  TensorView recv_x;         // [E, N, hidden] fp8 e4m3 (use_fp8) or bf16
  TensorView recv_x_scales;  // fp8: [E, N, hidden/128] fp32, or [E, N, hidden/512] int32 with
                             // use_ue8m0; column-major in the last two dims: strides
                             // (N * S, 1, N) for S scale columns
  TensorView recv_count;     // [E] int32: valid rows per expert
};

struct LowLatencyCombineArgs {
  TensorView x;                             // [E, N, hidden] bf16 expert outputs (the dispatch's layout)
  TensorView topk_idx;                      // [num_tokens, num_topk] the dispatch's
  TensorView topk_weights;                  // [num_tokens, num_topk] fp32
  TensorView out;                           // out [num_tokens, hidden] bf16
  TensorView combine_wait_recv_cost_stats;  // optional [num_ranks] int64, += ns waited per owner
  bool use_logfmt = false;                  // log-encode the rows that cross (LOGFMT in README)
  bool zero_copy = false;                   // x is next_low_latency_combine_buffer()
  bool return_recv_hook = false;
  StreamOptions stream;
};

// The receive half of a call made with return_recv_hook (or an empty hook). Calling it
// launches the receive on the stream of the call; it may be called once. The caller's
// tensors must stay alive and unmodified until the hook has been called and the stream
// has passed it: the outputs of a dispatch, and the tensors peers read in place when all
// ranks share this process (x of a combine without use_logfmt / zero_copy, x of a BF16
// dispatch). deep_ep lets x be reused after the send; here that needs a process group,
// zero_copy or FP8.
class LowLatencyHook {
 public:
  LowLatencyHook() = default;
  explicit LowLatencyHook(std::function<void()> receive) : receive_(std::make_shared<std::function<void()>>(std::move(receive))) {}
  bool pending() const { return receive_ && *receive_; }
  void operator()();

 private:
  std::shared_ptr<std::function<void()>> receive_;
};

struct LowLatencyCall {
  Event event;           // with async_finish: completion of what was launched
  LowLatencyHook hook;   // pending only with return_recv_hook
};

}  // namespace moe_ep
