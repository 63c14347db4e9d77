// Barrier phases shared by the intranode kernels. Every operation is
//   publish -> signal a flag set to all peers -> wait for all peers  (publish_and_wait_ready)
//   ... read from or write to peers' published tensors ...
//   signal `done` to all peers -> wait all `done` -> epoch+1          (finish_with_done_barrier)
// so every tensor a rank published outlives every peer's accesses to it. All waits are
// bounded; a failure sets state->abort for the later phases of the operation.
#pragma once
#include "device/sync.cuh"
#include "kernels/intranode/intranode_params.hpp"

namespace moe_ep::kernels {

__device__ __forceinline__ protocol::NvlHeader* peer_header(const CollectiveContext& ctx, int peer) {
  return reinterpret_cast<protocol::NvlHeader*>(ctx.peer_bases[peer]);
}

// A pointer of a peer's descriptor moved by `delta` bytes into this rank's address space.
template <typename T>
__device__ __forceinline__ T* moved(T* ptr, std::ptrdiff_t delta) {
  return ptr == nullptr ? ptr : reinterpret_cast<T*>(reinterpret_cast<std::uintptr_t>(ptr) + delta);
}

// A peer's descriptor with its pointers moved into this rank's address space.
__device__ __forceinline__ protocol::SourceDescriptor rebase(protocol::SourceDescriptor d,
                                                             const std::uint8_t* mapped_owner_base) {
  const std::ptrdiff_t delta = mapped_owner_base - d.owner_base;
  d.x = moved(d.x, delta);
  d.x_scales = moved(d.x_scales, delta);
  d.topk_idx = moved(d.topk_idx, delta);
  d.topk_weights = moved(d.topk_weights, delta);
  return d;
}
__device__ __forceinline__ protocol::SinkDescriptor rebase(protocol::SinkDescriptor d,
                                                           const std::uint8_t* mapped_owner_base) {
  const std::ptrdiff_t delta = mapped_owner_base - d.owner_base;
  d.recv_x = moved(d.recv_x, delta);
  d.recv_x_scales = moved(d.recv_x_scales, delta);
  d.recv_topk_idx = moved(d.recv_topk_idx, delta);
  d.recv_topk_weights = moved(d.recv_topk_weights, delta);
  d.recv_src_idx = moved(d.recv_src_idx, delta);
  return d;
}

__device__ __forceinline__ std::uint64_t current_op_epoch(const CollectiveContext& ctx) {
  return ctx.state->epoch + 1;
}

// Whole block. Thread 0 signals (after the caller's writes, ordered by the barrier and a
// system fence); threads 0..num_ranks-1 each wait for one peer. Returns false (every
// thread) when a wait failed or `local_failed`; then state->abort is set.
__device__ __forceinline__ std::uint64_t* flag_array(protocol::NvlHeader* header, protocol::FlagSet set) {
  switch (set) {
    case protocol::FlagSet::kReady: return header->ready;
    case protocol::FlagSet::kSinkReady: return header->sink_ready;
    case protocol::FlagSet::kDone: return header->done;
  }
  return header->ready;
}

__device__ __forceinline__ bool publish_and_wait_ready(const CollectiveContext& ctx, std::uint64_t epoch,
                                                       bool local_failed, protocol::Phase phase,
                                                       protocol::FlagSet set = protocol::FlagSet::kReady) {
  __shared__ bool failed;
  if (threadIdx.x == 0) {
    failed = local_failed;
    if (ctx.delay_ns != 0) device::sleep_until(device::global_timer_ns() + ctx.delay_ns);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence_system();
    const std::uint64_t tag = protocol::make_tag(epoch, ctx.op, local_failed);
    // Pairs with the wait_tag below, run by each peer on its own header; the fence above
    // makes each relaxed store a release.
    for (int q = 0; q < ctx.num_ranks; ++q) {
      device::store_relaxed(&flag_array(peer_header(ctx, q), set)[ctx.rank], tag, false);
    }
  }
  if (static_cast<int>(threadIdx.x) < ctx.num_ranks) {
    const int peer = threadIdx.x;
    const auto result = device::wait_tag(&flag_array(peer_header(ctx, ctx.rank), set)[peer], protocol::make_tag(epoch, ctx.op),
                                         ctx.timeout_ns, ctx.error, ctx.first_rank + ctx.rank, phase,
                                         ctx.first_rank + peer);
    if (result != device::WaitResult::kOk) failed = true;
  }
  __syncthreads();
  if (failed && threadIdx.x == 0) ctx.state->abort = 1;
  return !failed;
}

// Whole block, after the ready barrier: every peer's published shape must equal this
// rank's (a peer with a larger row or top-k would write past this rank's tensors). The
// comparison is symmetric, so every rank of a disagreeing group fails the same call.
__device__ __forceinline__ bool peers_agree_on_shapes(const CollectiveContext& ctx, protocol::Phase phase) {
  __shared__ bool agree;
  if (threadIdx.x == 0) agree = true;
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < ctx.num_ranks) {
    const protocol::SourceDescriptor& mine = peer_header(ctx, ctx.rank)->source;
    const protocol::SourceDescriptor& theirs = peer_header(ctx, threadIdx.x)->source;
    const std::int32_t a[] = {mine.row_bytes, mine.num_topk, mine.num_experts, mine.num_scales};
    const std::int32_t b[] = {theirs.row_bytes, theirs.num_topk, theirs.num_experts, theirs.num_scales};
#pragma unroll
    for (int f = 0; f < 4; ++f) {
      if (a[f] != b[f]) {
        device::record_error(ctx.error, protocol::ErrorCode::kShapeMismatch, ctx.first_rank + ctx.rank, phase,
                             ctx.first_rank + static_cast<int>(threadIdx.x), a[f], b[f], 0,
                             f + 1);
        agree = false;
      }
    }
  }
  __syncthreads();
  if (!agree && threadIdx.x == 0) ctx.state->abort = 1;
  return agree;
}

// Called by every block at its end. The last block to finish tells every peer that this
// rank is done accessing its tensors (reads, or writes into its outputs), waits until
// every peer is done accessing this rank's, and advances the epoch.
__device__ __forceinline__ void finish_with_done_barrier(const CollectiveContext& ctx, std::uint64_t epoch,
                                                         protocol::Phase phase) {
  __shared__ bool is_last;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    is_last = atomicAdd(&ctx.state->receive_ticket, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;
  if (threadIdx.x == 0) {
    ctx.state->receive_ticket = 0;
    __threadfence_system();
    const std::uint64_t tag = protocol::make_tag(epoch, ctx.op);
    // Pairs with the wait below, run by each source on its own header (released by the fence).
    for (int q = 0; q < ctx.num_ranks; ++q) device::store_relaxed(&peer_header(ctx, q)->done[ctx.rank], tag, false);
  }
  __shared__ bool failed;
  if (threadIdx.x == 0) failed = false;
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < ctx.num_ranks) {
    const int peer = threadIdx.x;
    const auto result = device::wait_tag(&peer_header(ctx, ctx.rank)->done[peer], protocol::make_tag(epoch, ctx.op),
                                         ctx.timeout_ns, ctx.error, ctx.first_rank + ctx.rank, phase,
                                         ctx.first_rank + peer);
    if (result != device::WaitResult::kOk) failed = true;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    if (failed) {
      ctx.state->abort = 1;
    } else {
      ctx.state->epoch = epoch;
    }
  }
}

}  // namespace moe_ep::kernels
