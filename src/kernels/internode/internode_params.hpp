// Parameters of the internode (hierarchical) high-throughput kernels, built on the host
// and passed by value. Ranks are grouped into nodes of ranks_per_node consecutive ranks;
// a token crosses to another node once, by the transport, to the rank with the same local
// index there (its forwarder), which writes it over NVLink into the final ranks' outputs.
// Every struct is templated on the transport's windows: transport::MemoryWindows (RDMA
// emulated over peer memory) or transport::GinWindows (NCCL GIN, builds with MOE_EP_WITH_GIN).
#pragma once
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "kernels/intranode/intranode_params.hpp"
#include "protocol/device_state.hpp"
#include "protocol/error_record.hpp"
#include "protocol/internode_layout.hpp"
#include "transport/transport_layout.hpp"

namespace moe_ep::kernels {

// What every internode kernel needs: the transport windows (all ranks), the window's
// carve, the node-local NVLink context (peer_bases = this node's ranks), the bounds.
template <typename Windows>
struct InternodeContext {
  Windows windows;                   // topology: rank, num_ranks, ranks_per_node
  protocol::InternodeWindow window;
  protocol::InternodeSlots slots;
  CollectiveContext node;            // NVLink barriers and published tensors within the node
  std::uint64_t timeout_ns;
  protocol::DeviceState* state;
  protocol::ErrorRecord* error;      // host-mapped
};
static_assert(std::is_trivially_copyable_v<InternodeContext<transport::MemoryWindows>>);

// Counting (one block): positions per rank and per node, the count-row exchange with every
// rank, the prefix matrix and the received counts for the host.
template <typename Windows>
struct InternodeNotifyParams {
  InternodeContext<Windows> ctx;
  bool cached;                        // only the exchange (shapes, and the slots' call count)
  int num_tokens;
  int num_experts;
  int num_topk;
  int row_bytes;
  int num_scales;
  int expert_alignment;
  int num_worst_tokens;               // > 0: capacity of the receive tensors
  int forward_capacity;               // rows of forward_rows (checked)
  const std::int64_t* topk_idx;       // [num_tokens, num_topk] or null (validated)
  const bool* is_token_in_rank;       // [num_tokens, num_ranks]
  const int* num_tokens_per_rank;     // [num_ranks] given, checked
  const int* num_tokens_per_rdma_rank;  // [num_nodes] given (optional), checked
  const int* num_tokens_per_expert;   // [num_experts]
  int* send_pos;                      // out [num_tokens, num_ranks]
  int* rdma_send_pos;                 // out [num_tokens, num_nodes]: slot among this rank's sends to that node
  int* rank_prefix_matrix;            // out [num_ranks, num_ranks] inclusive over sources
  int* forwarded_prefix;              // out [num_nodes]: inclusive prefix over source nodes of relayed tokens
  protocol::HostMappedState* host_state;
  bool host_waits;
};
static_assert(std::is_trivially_copyable_v<InternodeNotifyParams<transport::MemoryWindows>>);

// RDMA stage of dispatch (many blocks): each token staged once, put once per node it needs.
template <typename Windows>
struct InternodeSendParams {
  InternodeContext<Windows> ctx;
  protocol::InternodeDispatchCarve carve;
  int num_tokens;
  const std::uint8_t* x;
  std::int64_t x_row_stride;  // bytes
  std::int64_t row_bytes;
  const float* x_scales;
  std::int64_t scale_token_stride, scale_hidden_stride;
  int num_scales;
  const std::int64_t* topk_idx;  // or null
  const float* topk_weights;     // or null
  int num_topk;
  const int* send_pos;
  const int* rdma_send_pos;
  const int* rank_prefix_matrix;
};
static_assert(std::is_trivially_copyable_v<InternodeSendParams<transport::MemoryWindows>>);

// NVLink stage of dispatch (many blocks): every relayed token written into the outputs
// (published sinks) of its ranks on this node; its rows kept for combine.
template <typename Windows>
struct InternodeForwardParams {
  InternodeContext<Windows> ctx;
  protocol::InternodeDispatchCarve carve;
  int row_bytes;
  int num_scales;
  int num_topk;                 // 0: no top-k was dispatched
  bool has_weights;
  int num_local_experts;
  const int* forwarded_prefix;  // [num_nodes]
  int* forward_rows;            // out [forward_capacity, ranks_per_node]
  int forward_capacity;
};
static_assert(std::is_trivially_copyable_v<InternodeForwardParams<transport::MemoryWindows>>);

// Combine, at the forwarder (many blocks): the node's rows of each relayed token summed
// (fp32, local rank order) into one bf16 partial, put to the token's home rank.
template <typename Windows>
struct InternodeCombineForwardParams {
  InternodeContext<Windows> ctx;
  protocol::InternodeCombineCarve carve;
  int hidden;
  int num_topk;                 // 0 without weights
  const int* forwarded_prefix;  // [num_nodes]
  const int* forward_rows;      // [num_forwarded, ranks_per_node]
};
static_assert(std::is_trivially_copyable_v<InternodeCombineForwardParams<transport::MemoryWindows>>);

// Combine, at the home rank (many blocks): each token's partials summed in node order, + biases.
template <typename Windows>
struct InternodeCombineReduceParams {
  InternodeContext<Windows> ctx;
  protocol::InternodeCombineCarve carve;
  int num_tokens;
  int hidden;
  int num_topk;
  const int* rdma_send_pos;     // [num_tokens, num_nodes]
  const std::uint16_t* bias0;
  const std::uint16_t* bias1;
  std::int64_t bias0_row_stride, bias1_row_stride;
  std::uint16_t* combined_x;
  float* combined_topk_weights;
};
static_assert(std::is_trivially_copyable_v<InternodeCombineReduceParams<transport::MemoryWindows>>);

// Instantiated for transport::MemoryWindows, and transport::GinWindows with MOE_EP_WITH_GIN.
template <typename Windows>
void launch_internode_notify(const InternodeNotifyParams<Windows>& params, cudaStream_t stream);
template <typename Windows>
void launch_internode_send(const InternodeSendParams<Windows>& params, int num_blocks, cudaStream_t stream);
template <typename Windows>
void launch_internode_forward(const InternodeForwardParams<Windows>& params, int num_blocks, cudaStream_t stream);
template <typename Windows>
void launch_internode_combine_forward(const InternodeCombineForwardParams<Windows>& params, int num_blocks,
                                      cudaStream_t stream);
template <typename Windows>
void launch_internode_combine_reduce(const InternodeCombineReduceParams<Windows>& params, int num_blocks,
                                     cudaStream_t stream);
// reset(): zeroes this rank's signal slots (no peer may be signalling).
template <typename Windows>
void launch_internode_reset(const InternodeContext<Windows>& ctx, cudaStream_t stream);
// Load each kernel now (see preload_notify_kernels).
void preload_internode_notify_kernel();
void preload_internode_dispatch_kernels();
void preload_internode_combine_kernels();

}  // namespace moe_ep::kernels
