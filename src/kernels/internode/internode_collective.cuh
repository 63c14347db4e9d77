// Device helpers shared by the internode kernels: the transport, waits on signal slots
// by every peer a block depends on, the last-block ticket, and the mapping from a relayed
// token's index to (source node, slot).
#pragma once
#include <cstdint>

#include "kernels/intranode/collective.cuh"
#include "kernels/internode/internode_params.hpp"
#include "transport/memory_transport.cuh"
#include "transport/transport_sync.cuh"

namespace moe_ep::kernels {

// Emulated RDMA over peer memory: the kernels move bytes only through put/signal, so the
// same code runs over GIN once a window offset is all a put needs.
using InternodeTransport = transport::EmulatedRdmaTransport;

__device__ __forceinline__ InternodeTransport internode_transport(const InternodeContext& ctx) {
  return transport::memory_transport<InternodeTransport>(ctx.windows);
}

struct NodeView {
  int rank, node, local, num_nodes, per_node;
};
__device__ __forceinline__ NodeView node_view(const InternodeContext& ctx) {
  const transport::TransportTopology& t = ctx.windows.topology;
  return {t.rank, t.node(), t.local_rank(), t.num_nodes(), t.ranks_per_node};
}

// Whole block. Threads 0..num_nodes-1 each wait until slot slot_of(node) counts `calls`;
// `peer_of(node)` is the rank that signals it. False (every thread) if one expired; then
// state->abort is set.
template <typename SlotOf, typename PeerOf>
__device__ __forceinline__ bool wait_nodes(const InternodeContext& ctx, const InternodeTransport& t,
                                           std::uint64_t calls, protocol::Phase phase, SlotOf slot_of,
                                           PeerOf peer_of) {
  __shared__ bool failed;
  if (threadIdx.x == 0) failed = false;
  __syncthreads();
  const int nodes = ctx.windows.topology.num_nodes();
  if (static_cast<int>(threadIdx.x) < nodes) {
    const int n = threadIdx.x;
    if (!transport::wait_signal(t, slot_of(n), calls, ctx.timeout_ns, ctx.error, phase, peer_of(n))) failed = true;
  }
  __syncthreads();
  const bool ok = !failed;
  if (!ok && threadIdx.x == 0) ctx.state->abort = 1;
  return ok;
}

// Whole block, after the block's puts: true in the last block to get here (whose signals
// are then ordered after every block's puts); the ticket is rearmed for the next kernel.
__device__ __forceinline__ bool internode_last_block(const InternodeContext& ctx, const InternodeTransport& t) {
  __shared__ bool is_last;
  t.flush();
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    is_last = atomicAdd(&ctx.state->internode_ticket, 1u) == gridDim.x - 1;
    if (is_last) ctx.state->internode_ticket = 0;
  }
  __syncthreads();
  return is_last;
}

// Relayed token i (in order of source node, then slot) -> its source node; *slot set.
__device__ __forceinline__ int relayed_source(const int* forwarded_prefix, int num_nodes, int i, int* slot) {
  int n = 0;
  while (n + 1 < num_nodes && i >= forwarded_prefix[n]) ++n;
  *slot = i - (n == 0 ? 0 : forwarded_prefix[n - 1]);
  return n;
}

}  // namespace moe_ep::kernels
