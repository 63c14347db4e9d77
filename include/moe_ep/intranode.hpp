// Arguments of the high-throughput (intranode) calls. Every tensor is a caller-owned view;
// outputs are written, never allocated, here (see Buffer::dispatch_notify for the
// two-step flow that lets a caller allocate outputs between counting and copying).
#pragma once
#include <cstdint>
#include <vector>

#include <cuda_runtime_api.h>

#include "moe_ep/config.hpp"
#include "moe_ep/tensor_view.hpp"

namespace moe_ep {

struct StreamOptions {
  cudaStream_t compute_stream = nullptr;  // the caller's stream
  cudaEvent_t previous_event = nullptr;   // comm stream waits on this instead of compute_stream
  bool async_finish = false;              // return an event instead of making compute wait
};

struct LayoutArgs {
  TensorView topk_idx;                  // [num_tokens, num_topk] int64 (topk_idx_t), -1 = none
  int num_experts = 0;
  TensorView num_tokens_per_rank;       // out [num_ranks] int32
  TensorView num_tokens_per_rdma_rank;  // out [num_nodes] int32, only when ranks span nodes
  TensorView num_tokens_per_expert;     // out [num_experts] int32
  TensorView is_token_in_rank;          // out [num_tokens, num_ranks] bool
  StreamOptions stream;
};

// What a dispatch leaves behind for combine and cached dispatch. Caller-owned views.
struct DispatchHandle {
  TensorView rank_prefix_matrix;  // [num_ranks, num_ranks] int32, inclusive prefix over sources
  TensorView is_token_in_rank;    // [num_tokens, num_ranks] bool (the caller's, kept)
  TensorView send_pos;            // [num_tokens, num_ranks] int32: row of the token among what
                                  // this rank sends to that rank, -1 if not sent
  TensorView recv_src_idx;        // [num_recv_rows] int32: source token of each received row
  // Internode only (ranks on several nodes), caller-allocated like the above:
  TensorView rdma_send_pos;       // [num_tokens, num_nodes] int32: slot of the token among what
                                  // this rank sends to that node, -1 if not sent
  TensorView forwarded_prefix;    // [num_nodes] int32: inclusive prefix over source nodes of the
                                  // tokens this rank relays to its node's ranks
  TensorView forward_rows;        // [num_forward_rows, ranks_per_node] int32: each relayed token's
                                  // row at each rank of this node, -1 if not there
  std::int64_t num_forward_rows = 0;  // rows of forward_rows
  std::int64_t num_tokens = 0;
  std::int64_t num_recv_rows = 0; // rows of the receive tensors (num_worst_tokens if set)
  std::uint64_t buffer_id = 0;    // the Buffer that made it
  std::uint64_t buffer_generation = 0;  // its reset count then
};

struct DispatchArgs {
  TensorView x;                      // [num_tokens, hidden] bf16 or fp8 e4m3
  TensorView x_scales;               // fp8 only: [num_tokens, num_scales] (or [num_tokens]) fp32, any strides
  TensorView topk_idx;               // optional [num_tokens, num_topk] int64
  TensorView topk_weights;           // optional [num_tokens, num_topk] fp32
  TensorView num_tokens_per_rank;    // [num_ranks] int32 (from the layout); not with a handle
  TensorView num_tokens_per_expert;  // [num_experts] int32; not with a handle
  TensorView is_token_in_rank;       // [num_tokens, num_ranks] bool; not with a handle
  TensorView num_tokens_per_rdma_rank;  // internode, optional: [num_nodes] int32 (checked)
  int expert_alignment = 1;
  int num_worst_tokens = 0;          // > 0: fixed-size outputs, no host sync
  Config config;
  StreamOptions stream;
};

// Host-visible result of the counting step.
struct DispatchCounts {
  std::int64_t num_recv_tokens = -1;  // -1 with num_worst_tokens (known on the device only)
  std::vector<int> num_recv_tokens_per_expert;  // aligned; empty with num_worst_tokens
  std::int64_t num_recv_rows = 0;     // rows to allocate for the receive tensors
  std::int64_t num_forward_rows = 0;  // internode: rows to allocate for handle.forward_rows
};

struct DispatchOutputs {
  TensorView recv_x;              // [num_recv_rows, hidden] same dtype as x
  TensorView recv_x_scales;       // fp8: [num_recv_rows, num_scales] fp32
  TensorView recv_topk_idx;       // with topk: [num_recv_rows, num_topk] int64
  TensorView recv_topk_weights;   // with topk weights: [num_recv_rows, num_topk] fp32
};

struct CombineArgs {
  TensorView x;                      // [num_recv_rows, hidden] bf16 (the expert outputs)
  TensorView topk_weights;           // optional [num_recv_rows, num_topk] fp32
  TensorView bias0, bias1;           // optional [num_tokens, hidden] bf16
  TensorView combined_x;             // out [num_tokens, hidden] bf16
  TensorView combined_topk_weights;  // out [num_tokens, num_topk] fp32 (with topk_weights)
  Config config;
  StreamOptions stream;
};

}  // namespace moe_ep
