// Device helpers shared by the internode kernels: the transport, waits on signal slots
// by every peer a block depends on, the last-block ticket, and the mapping from a relayed
// token's index to (source node, slot).
#pragma once
#include <cstdint>

#include "kernels/intranode/collective.cuh"
#include "kernels/internode/internode_params.hpp"
#include "transport/memory_transport.cuh"
#include "transport/transport_sync.cuh"
#if defined(MOE_EP_WITH_GIN)
#include "transport/gin/gin_transport.cuh"
#endif

namespace moe_ep::kernels {

// The transport of a kernel's windows: RDMA emulated over peer memory, or GIN. Kernels
// move bytes between nodes only through put/signal/flush and read only their own window.
__device__ __forceinline__ transport::EmulatedRdmaTransport make_transport(const transport::MemoryWindows& w) {
  return transport::memory_transport<transport::EmulatedRdmaTransport>(w);
}
#if defined(MOE_EP_WITH_GIN)
__device__ __forceinline__ transport::GinTransport make_transport(const transport::GinWindows& w) {
  return transport::gin_transport(w);
}
#endif

struct NodeView {
  int rank, node, local, num_nodes, per_node;
};
template <typename Windows>
__device__ __forceinline__ NodeView node_view(const InternodeContext<Windows>& ctx) {
  const transport::TransportTopology& t = ctx.windows.topology;
  return {t.rank, t.node(), t.local_rank(), t.num_nodes(), t.ranks_per_node};
}

// Whole block. Threads 0..num_nodes-1 each wait until slot slot_of(node) counts `calls`;
// `peer_of(node)` is the rank that signals it. False (every thread) if one expired; then
// state->abort is set.
template <typename Windows, typename Transport, typename SlotOf, typename PeerOf>
__device__ __forceinline__ bool wait_nodes(const InternodeContext<Windows>& ctx, const Transport& t,
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
template <typename Windows, typename Transport>
__device__ __forceinline__ bool internode_last_block(const InternodeContext<Windows>& ctx, const Transport& t) {
  __shared__ bool is_last;
  t.flush_block();
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

// X(windows type) for every transport this build has: the explicit instantiations of the
// launch functions and the preloads.
#if defined(MOE_EP_WITH_GIN)
#define MOE_EP_FOR_EACH_WINDOWS(X) X(transport::MemoryWindows) X(transport::GinWindows)
#else
#define MOE_EP_FOR_EACH_WINDOWS(X) X(transport::MemoryWindows)
#endif

}  // namespace moe_ep::kernels
