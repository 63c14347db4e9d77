// Parameters of the intranode (NVLink-domain) kernels, built on the host and passed by
// value. Peers are reached through `peer_bases`: the base of every rank's NVL buffer
// (this rank's own included), laid out by protocol::carve_nvl_buffer.
#pragma once
#include <array>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "moe_ep/config.hpp"
#include "protocol/device_state.hpp"
#include "protocol/error_record.hpp"
#include "protocol/nvl_buffer_layout.hpp"

namespace moe_ep::kernels {

// What every collective phase needs: who we are, where the peers are, how long to wait.
struct CollectiveContext {
  std::array<std::uint8_t*, kMaxNvlRanks> peer_bases;
  protocol::NvlBufferLayout layout;
  int rank;        // within peer_bases (the node's ranks, for the internode kernels)
  int num_ranks;
  int first_rank;  // group rank of peer_bases[0]: errors name group ranks
  protocol::Op op;
  std::uint64_t timeout_ns;
  std::uint64_t delay_ns;           // fault injection: sleep before signalling
  protocol::DeviceState* state;     // this rank's
  protocol::ErrorRecord* error;     // host-mapped
};
static_assert(std::is_trivially_copyable_v<CollectiveContext>);

// Counting phase of dispatch (one block): send lists, counts, publication, ready barrier,
// rank prefix matrix and the received counts for the host.
struct NotifyParams {
  CollectiveContext ctx;
  protocol::SourceDescriptor source;      // published as is
  bool cached;                            // reuse a handle's routing: only publish + barrier
  int num_tokens;
  int num_experts;
  int num_topk;
  int expert_alignment;
  int num_worst_tokens;                   // > 0: capacity of the receive tensors
  const bool* is_token_in_rank;           // [num_tokens, num_ranks]
  const int* num_tokens_per_rank;         // [num_ranks] given by the caller, checked
  const int* num_tokens_per_expert;       // [num_experts]
  int* send_pos;                          // out [num_tokens, num_ranks]
  int* rank_prefix_matrix;                // out [num_ranks, num_ranks]
  protocol::HostMappedState* host_state;  // out: received counts
  bool host_waits;                        // set host_state->counts_ready after the counts
};
static_assert(std::is_trivially_copyable_v<NotifyParams>);

// Copy phase of dispatch (many blocks): every rank pushes each of its tokens, read once,
// into the output tensors (sinks) of every rank it goes to.
struct SendParams {
  CollectiveContext ctx;
  int num_tokens;
  const std::uint8_t* x;          // [num_tokens, row_bytes], row stride below
  std::int64_t x_row_stride;      // bytes
  std::int64_t row_bytes;
  const float* x_scales;          // fp8 scales or null; strides in elements
  std::int64_t scale_token_stride;
  std::int64_t scale_hidden_stride;
  int num_scales;
  const std::int64_t* topk_idx;   // [num_tokens, num_topk] or null
  const float* topk_weights;      // [num_tokens, num_topk] or null
  int num_topk;
  int num_local_experts;          // experts per rank
  const int* send_pos;            // [num_tokens, num_ranks]
  const int* rank_prefix_matrix;  // [num_ranks, num_ranks]
};
static_assert(std::is_trivially_copyable_v<SendParams>);

// Copy phase of dispatch for process groups (many blocks): every received row pulled
// from its source's staging, one warp per row.
struct ReceiveParams {
  CollectiveContext ctx;
  bool cached;
  const int* rank_prefix_matrix;  // [num_ranks, num_ranks]
  int* recv_src_idx;              // [rows] written, or read when cached
  int num_rows;                   // rows of the receive tensors (capacity)
  std::uint8_t* recv_x;           // [rows, row_bytes]
  std::int64_t row_bytes;
  float* recv_x_scales;           // [rows, num_scales] or null
  int num_scales;
  std::int64_t* recv_topk_idx;    // [rows, num_topk] or null
  float* recv_topk_weights;       // [rows, num_topk] or null
  int num_topk;
  int expert_begin;               // first global expert of this rank
  int num_local_experts;
};
static_assert(std::is_trivially_copyable_v<ReceiveParams>);

// Publication (one block): publish a source (combine: the expert outputs) or a sink
// (dispatch: the output tensors) and wait until every peer has published its own.
struct PublishParams {
  CollectiveContext ctx;
  protocol::FlagSet flags;            // kReady: publish `source`; kSinkReady: publish `sink`
  protocol::SourceDescriptor source;
  protocol::SinkDescriptor sink;
  protocol::Phase phase;
};
static_assert(std::is_trivially_copyable_v<PublishParams>);

// Combine reduction (many blocks): each home token sums its rows pulled from every rank.
struct ReduceParams {
  CollectiveContext ctx;
  int num_tokens;
  int hidden;                       // bf16 elements
  int num_topk;                     // 0 without weights
  const bool* is_token_in_rank;     // [num_tokens, num_ranks]
  const int* send_pos;              // [num_tokens, num_ranks]
  const int* rank_prefix_matrix;    // [num_ranks, num_ranks]
  const std::uint16_t* bias0;       // [num_tokens, hidden] bf16 or null
  const std::uint16_t* bias1;
  std::int64_t bias0_row_stride, bias1_row_stride;  // elements
  std::uint16_t* combined_x;        // [num_tokens, hidden] bf16
  float* combined_topk_weights;     // [num_tokens, num_topk] or null
};
static_assert(std::is_trivially_copyable_v<ReduceParams>);

void launch_notify(const NotifyParams& params, cudaStream_t stream);
void launch_send(const SendParams& params, int num_blocks, cudaStream_t stream);
void launch_receive(const ReceiveParams& params, int num_blocks, cudaStream_t stream);
void launch_publish(const PublishParams& params, cudaStream_t stream);
void launch_reduce(const ReduceParams& params, int num_blocks, cudaStream_t stream);

// Load each kernel now. With CUDA's lazy loading, the first launch of a kernel may wait
// for the device to go idle; a rank whose first launch waits while its peers spin on it
// would stall until the bounded waits expire. Buffer's constructor calls these.
void preload_notify_kernels();
void preload_send_kernels();
void preload_receive_kernels();
void preload_combine_kernels();

}  // namespace moe_ep::kernels
