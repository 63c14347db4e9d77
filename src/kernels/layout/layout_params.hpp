// Parameters of the get_dispatch_layout kernel, built on the host, passed by value.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "protocol/device_state.hpp"
#include "protocol/error_record.hpp"

namespace moe_ep::kernels {

struct LayoutParams {
  const std::int64_t* topk_idx;   // [num_tokens, num_topk]
  int num_tokens;
  int num_topk;
  int num_experts;
  int num_ranks;
  int num_ranks_per_node;
  int num_nodes;                  // > 1 only when ranks span nodes
  int rank;                       // for error messages
  int* num_tokens_per_rank;       // [num_ranks]
  int* num_tokens_per_rdma_rank;  // [num_nodes] or null
  int* num_tokens_per_expert;     // [num_experts]
  bool* is_token_in_rank;         // [num_tokens, num_ranks]
  int* workspace;                 // [num_blocks, counters_per_block()]
  protocol::DeviceState* state;   // layout_ticket
  protocol::ErrorRecord* error;

  constexpr int counters_per_block() const { return num_experts + num_ranks + num_nodes; }
};
static_assert(std::is_trivially_copyable_v<LayoutParams>);

int layout_num_blocks(int num_tokens);
std::size_t layout_workspace_bytes(int num_blocks, int num_experts, int num_ranks, int num_nodes);
// Enough for any valid call (a Buffer allocates this once: growing it later would need a
// cudaFree, which waits for the whole device and so for peers sharing it).
std::size_t layout_workspace_bytes_max();
void launch_layout(const LayoutParams& params, cudaStream_t stream);
// Loads the kernel now (see preload.hpp).
void preload_layout_kernels();

}  // namespace moe_ep::kernels
