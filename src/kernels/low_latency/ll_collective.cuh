// Barrier phases shared by the low-latency kernels. An op on one half of the LL region:
//   send kernel:  write own half -> signal `ready` to every peer   (signal_peers)
//   recv kernel:  wait `ready` of every peer (wait_peers) -> read peers' halves ->
//                 signal `done` to every peer, wait every peer's `done` -> epoch + 1
//                 (ll_done_barrier)
// so a half is rewritten only after every reader finished with it. Masked peers (enable
// shrink) are skipped; with shrink an expired wait masks the peer instead of failing.
// With ctx.block_done (every rank on this GPU, no shrink) `done` is per block: each block
// signals its own and block 0 waits for all of them, no ticket; and every flag is stored
// once, in the signaller's own header, where the peers read it (ll_own_flags).
#pragma once
#include "device/sync.cuh"
#include "kernels/low_latency/ll_params.hpp"
#include "kernels/low_latency/ll_trace.hpp"
#include "transport/memory_transport.cuh"

namespace moe_ep::kernels {

__device__ __forceinline__ std::uint8_t* ll_half(const LlContext& ctx, int peer) {
  return ctx.peer_bases[peer] + ctx.parity * ctx.half_bytes;
}
__device__ __forceinline__ protocol::LlHeader* ll_header(const LlContext& ctx, int peer) {
  return reinterpret_cast<protocol::LlHeader*>(ll_half(ctx, peer));
}
// ---- peers reached by RDMA (see LlContext) -------------------------------------------
template <bool kRdma>
__device__ __forceinline__ bool ll_rdma_peer(const LlContext& ctx, int q) {
  if constexpr (!kRdma) return false;  // one-node builds compile the peer-memory path only
  return ctx.mirrors.count > 0 && q != ctx.rank &&
         (ctx.all_rdma || q / ctx.ranks_per_node != ctx.rank / ctx.ranks_per_node);
}
// Bit q: peer q is reached by RDMA.
__device__ __forceinline__ unsigned ll_rdma_peers(const LlContext& ctx) {
  unsigned mask = 0;
  for (int q = 0; q < ctx.num_ranks; ++q) mask |= ll_rdma_peer<true>(ctx, q) ? 1u << q : 0u;
  return mask;
}
// The transport to RDMA peers: the peers' LL regions are the windows (emulated over peer
// memory; the kernels use it only through put/signal). It indexes ctx's bases in place.
using LlRdmaTransport = transport::EmulatedRdmaTransportOver<const std::array<std::uint8_t*, kMaxNvlRanks>&>;
__device__ __forceinline__ LlRdmaTransport ll_transport(const LlContext& ctx) {
  return {ctx.peer_bases, {ctx.rank, ctx.num_ranks, ctx.all_rdma ? 1 : ctx.ranks_per_node}, ctx.gpu_scope};
}
// Byte offset, in rank `at`'s region, of the mirror slot that `source` pushes into.
__device__ __forceinline__ std::int64_t ll_mirror_offset(const LlContext& ctx, int at, int source) {
  return ctx.parity * ctx.half_bytes + ctx.mirrors.offset + (source - (source > at ? 1 : 0)) * ctx.mirrors.stride;
}
// Where this rank reads source s's published data: s's half in place, or the mirror slot
// s pushed into.
template <bool kRdma>
__device__ __forceinline__ const std::uint8_t* ll_source_half(const LlContext& ctx, int s) {
  if (ll_rdma_peer<kRdma>(ctx, s)) return ctx.peer_bases[ctx.rank] + ll_mirror_offset(ctx, ctx.rank, s);
  return ctx.peer_bases[s] + ctx.parity * ctx.half_bytes;
}
template <bool kRdma>
__device__ __forceinline__ const protocol::LlPublished& ll_source_published(const LlContext& ctx, int s) {
  return reinterpret_cast<const protocol::LlHeader*>(ll_source_half<kRdma>(ctx, s))->published;
}

// One thread: the time of `point` of this op (MOE_EP_LL_TRACE builds; else nothing). With
// `latest`, the latest of the blocks that stamp it.
__device__ __forceinline__ void ll_stamp(const LlContext& ctx, LlTracePoint point, bool latest = false) {
#ifdef MOE_EP_LL_TRACE
  if (ctx.trace == nullptr) return;
  std::uint64_t* slot = ctx.trace + (ctx.op == protocol::Op::kLowLatencyCombine ? kLlTracePoints : 0) + point;
  const std::uint64_t now = device::global_timer_ns();
  if (latest) {
    atomicMax(reinterpret_cast<unsigned long long*>(slot), static_cast<unsigned long long>(now));
  } else {
    *slot = now;
  }
#endif
}

__device__ __forceinline__ std::uint64_t ll_op_epoch(const LlContext& ctx) {
  return ctx.state->ll_epoch[ctx.parity] + 1;
}
__device__ __forceinline__ bool ll_masked(const LlContext& ctx, int peer) {
  return *reinterpret_cast<volatile const int*>(&ctx.state->ll_masked[peer]) != 0;
}

// A pointer a peer published (in its address space) moved into ours.
template <typename T>
__device__ __forceinline__ const T* ll_rebase(const LlContext& ctx, int peer, const protocol::LlPublished& pub,
                                              const T* ptr) {
  const std::ptrdiff_t delta = ctx.peer_bases[peer] - pub.owner_base;
  return reinterpret_cast<const T*>(reinterpret_cast<const std::uint8_t*>(ptr) + delta);
}

// Whether a rank's flags live in its own header: with ctx.own_flags (every rank on this
// GPU, no shrink; a property of the buffer, so the same for every op and path) and no RDMA
// peer, each peer reads them there, so a signal is one store (a store into each peer's
// header waits on each new destination in turn; H100, one token per rank at 8 ranks,
// `ready`: combine 9.1 -> 8.9 us, kernel start to end); else each peer's copy is in that
// peer's header (RDMA peers get it as a transport signal).
template <bool kRdma>
__device__ __forceinline__ bool ll_own_flags(const LlContext& ctx) {
  return !kRdma && ctx.own_flags;
}
// Where this rank reads peer q's flag of this op.
template <bool kRdma>
__device__ __forceinline__ const std::uint64_t* ll_peer_flag(const LlContext& ctx,
                                                             std::uint64_t (protocol::LlHeader::*flags)[kMaxNvlRanks],
                                                             int q) {
  return &(ll_header(ctx, ll_own_flags<kRdma>(ctx) ? q : ctx.rank)->*flags)[q];
}

// One thread. Publishes every earlier write of the block (the caller synchronized it).
template <bool kRdma>
__device__ __forceinline__ void ll_signal_peers(const LlContext& ctx, std::uint64_t (protocol::LlHeader::*flags)[kMaxNvlRanks],
                                                std::uint64_t epoch, bool failed) {
  if (ctx.delay_ns != 0) device::sleep_until(device::global_timer_ns() + ctx.delay_ns);
  if (ctx.gpu_scope) {
    __threadfence();
  } else {
    __threadfence_system();
  }
  const std::uint64_t tag = protocol::make_tag(epoch, ctx.op, failed);
  if (ll_own_flags<kRdma>(ctx)) {
    device::store_relaxed(&(ll_header(ctx, ctx.rank)->*flags)[ctx.rank], tag, true);
    return;
  }
  // Pairs with ll_wait_peers, run by each peer on its own header; RDMA peers get it as a
  // transport signal (ordered after our pushes) into the same word.
  for (int q = 0; q < ctx.num_ranks; ++q) {
    std::uint64_t* flag = &(ll_header(ctx, q)->*flags)[ctx.rank];
    if (ll_rdma_peer<kRdma>(ctx, q)) {
      ll_transport(ctx).signal_set(q, static_cast<int>((reinterpret_cast<std::uint8_t*>(flag) - ctx.peer_bases[q]) / 8), tag);
    } else {
      device::store_relaxed(flag, tag, ctx.gpu_scope);  // released by the fence above
    }
  }
}

// Block 0, thread 0, at the start of every LL kernel: tells peers this op's kernel runs
// (read only by a peer whose wait expired, to say why).
//
// solo: this rank is alone and the launch runs the whole op; it waits for no flag and
// signals none, so nothing reads the epoch: it is only moved on (an add whose result
// nobody waits for), and the op ends with the kernel, without a done barrier.
__device__ __forceinline__ void ll_mark_entered(const LlContext& ctx, bool solo = false) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  ll_stamp(ctx, kTraceEntered);
  if (solo) {
    atomicAdd(reinterpret_cast<unsigned long long*>(&ctx.state->ll_epoch[ctx.parity]), 1ull);
    return;
  }
  protocol::LlHeader* own = ll_header(ctx, ctx.rank);
  own->entered_ns = device::global_timer_ns();
  own->entered = protocol::make_tag(ll_op_epoch(ctx), ctx.op);
}

// Records an expired wait for peer q (`flag`: what it waited on), with when q's kernel for
// this op started relative to the wait (d, us; kLlPeerNotEntered if it had not started).
template <bool kRdma>
__device__ __forceinline__ void ll_record_timeout(const LlContext& ctx, protocol::Phase phase, int q,
                                                  std::uint64_t expected, const std::uint64_t* flag,
                                                  std::uint64_t wait_start) {
  const volatile protocol::LlHeader* peer = ll_header(ctx, q);
  // An RDMA peer's memory is not readable: its start stays unknown.
  const bool readable = !ll_rdma_peer<kRdma>(ctx, q);
  const std::uint64_t entered = readable ? peer->entered : 0;
  std::int32_t offset_us = readable ? protocol::kLlPeerNotEntered : protocol::kPeerEntryUnknown;
  if (readable && entered == expected) {
    const double us = (static_cast<double>(peer->entered_ns) - static_cast<double>(wait_start)) / 1000.0;
    offset_us = static_cast<std::int32_t>(fmax(-2e9, fmin(2e9, us)));
  }
  device::record_error(ctx.error, protocol::ErrorCode::kTimeout, ctx.rank, phase, q, static_cast<std::int64_t>(expected),
                       static_cast<std::int64_t>(device::load_acquire(flag, ctx.gpu_scope)),
                       static_cast<std::int64_t>(wait_start), offset_us);
}

struct LlArrivals {
  unsigned arrived;  // bit q: peer q signalled this op (not masked)
  bool failed;       // a peer failed, called another op, or (without shrink) timed out
};

// Every rank arrived (no shrink: the waits that cannot mask).
__device__ __forceinline__ LlArrivals ll_all_arrived(const LlContext& ctx, bool failed) {
  return {ctx.num_ranks >= 32 ? ~0u : (1u << ctx.num_ranks) - 1, failed};
}

// Whole block: waits for `flags` of every unmasked peer. With shrink, an expired wait
// masks that peer. wait_stats[q] (if given) accumulates the ns waited for peer q.
// signalled_self: this rank's own flag is not awaited (this block just signalled it, or
// the caller does not need it yet); it counts as arrived.
template <bool kRdma>
__device__ __forceinline__ LlArrivals ll_wait_peers(const LlContext& ctx,
                                                    std::uint64_t (protocol::LlHeader::*flags)[kMaxNvlRanks],
                                                    std::uint64_t epoch, protocol::Phase phase,
                                                    std::int64_t* wait_stats = nullptr, bool signalled_self = false) {
  __shared__ unsigned arrived;
  __shared__ bool failed;
  if (threadIdx.x == 0) {
    arrived = 0;
    failed = false;
  }
  __syncthreads();
  const int q = threadIdx.x;
  if (q == ctx.rank && signalled_self) {
    atomicOr(&arrived, 1u << q);
  } else if (q < ctx.num_ranks && (q == ctx.rank || !ctx.enable_shrink || !ll_masked(ctx, q))) {
    // Never skip ourselves; only shrink masks peers (not a load in front of every wait).
    const std::uint64_t start = device::global_timer_ns();
    const std::uint64_t* flag = ll_peer_flag<kRdma>(ctx, flags, q);
    const std::uint64_t expected = protocol::make_tag(epoch, ctx.op);
    const auto result = device::wait_tag(flag, expected, ctx.timeout_ns, ctx.error, ctx.rank, phase, q,
                                         /*record_timeout=*/false, ctx.gpu_scope);
    // A reduction nobody waits for (a load and store would delay the block's barrier).
    if (wait_stats != nullptr) {
      atomicAdd(reinterpret_cast<unsigned long long*>(&wait_stats[q]), device::global_timer_ns() - start);
    }
    const bool masks = ctx.enable_shrink && q != ctx.rank;
    if (result == device::WaitResult::kOk) {
      atomicOr(&arrived, 1u << q);
    } else if (result == device::WaitResult::kTimeout && masks) {
      atomicExch(&ctx.state->ll_masked[q], 1);
    } else {
      if (result == device::WaitResult::kTimeout) ll_record_timeout<kRdma>(ctx, phase, q, expected, flag, start);
      failed = true;
    }
  }
  __syncthreads();
  return {arrived, failed};
}

// The shape fields every rank must share (the published ones of peer q in thread q).
struct LlShapeFields {
  static constexpr int kCount = 6;
  std::int32_t values[kCount];
};
__device__ __forceinline__ LlShapeFields ll_shape_fields(const protocol::LlPublished& p) {
  return {{p.hidden, p.num_topk, p.num_experts, p.max_tokens, p.format, p.direct}};
}

// Thread q < num_ranks, after ll_wait_peers: loads arrived peer q's shape (split from the
// check so a caller can put other loads in flight meanwhile).
template <bool kRdma>
__device__ __forceinline__ LlShapeFields ll_load_peer_shape(const LlContext& ctx, unsigned arrived) {
  const int q = threadIdx.x;
  // Ours is ctx.shape (a direct dispatch may not have published it yet).
  if (q < ctx.num_ranks && q != ctx.rank && (arrived & (1u << q))) {
    return ll_shape_fields(ll_source_published<kRdma>(ctx, q));
  }
  return ll_shape_fields(ctx.shape);
}

// Whole block: every arrived peer's shape (from ll_load_peer_shape) equals ours.
__device__ __forceinline__ bool ll_check_peer_shape(const LlContext& ctx, const LlShapeFields& theirs,
                                                    protocol::Phase phase) {
  __shared__ bool agree;
  if (threadIdx.x == 0) agree = true;
  __syncthreads();
  const LlShapeFields ours = ll_shape_fields(ctx.shape);
  const protocol::ShapeField fields[] = {protocol::ShapeField::kHidden,     protocol::ShapeField::kNumTopk,
                                         protocol::ShapeField::kNumExperts, protocol::ShapeField::kMaxTokens,
                                         protocol::ShapeField::kFormat,     protocol::ShapeField::kDispatchPath};
#pragma unroll
  for (int f = 0; f < LlShapeFields::kCount; ++f) {
    if (ours.values[f] != theirs.values[f]) {
      device::record_error(ctx.error, protocol::ErrorCode::kShapeMismatch, ctx.rank, phase, threadIdx.x,
                           ours.values[f], theirs.values[f], 0, static_cast<std::int32_t>(fields[f]));
      agree = false;
    }
  }
  __syncthreads();
  return agree;
}

// Whole block, after ll_wait_peers: every arrived peer published the same shape as ours.
template <bool kRdma>
__device__ __forceinline__ bool ll_peers_share_shape(const LlContext& ctx, unsigned arrived, protocol::Phase phase) {
  return ll_check_peer_shape(ctx, ll_load_peer_shape<kRdma>(ctx, arrived), phase);
}

// Called by every block at its end: true in the last block to get here (its threads see
// every earlier block's writes); the ticket is reset for the next op.
__device__ __forceinline__ bool ll_last_block(std::uint32_t* ticket) {
  __shared__ bool is_last;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    is_last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    if (is_last) *ticket = 0;
  }
  __syncthreads();
  return is_last;
}

// One thread: this rank's shape and rows (ctx.shape) into its header. Peers read it only
// after this op's `ready`, and the previous op on this half is done (every peer finished
// reading; they load what they need of it before signalling `done`), so it may be written
// at the op's start, complete by the time `ready`'s fence runs (H100, ll-v3 at 2 ranks:
// dispatch 20.4 -> 20.1 us; 0.1-0.2 us elsewhere).
__device__ __forceinline__ void ll_write_published(const LlContext& ctx) {
  ll_header(ctx, ctx.rank)->published = ctx.shape;
}

// The first warp of one block, once every write of the send phase is done: publishes this
// rank's shape and rows (ctx.shape; unless `written` by ll_write_published in this block
// before its last barrier) and signals `ready` to every peer.
template <bool kRdma>
__device__ __forceinline__ void ll_publish_ready(const LlContext& ctx, std::uint64_t epoch, bool written = false) {
  protocol::LlPublished* published = &ll_header(ctx, ctx.rank)->published;
  if (threadIdx.x == 0 && !written) *published = ctx.shape;
  __syncwarp();
  if constexpr (kRdma) {
    // RDMA peers get the published shape in their mirror slot's header.
    const unsigned rdma = ll_rdma_peers(ctx);
    const std::int64_t published_offset = reinterpret_cast<std::uint8_t*>(published) - ctx.peer_bases[ctx.rank];
    for (int q = 0; q < ctx.num_ranks; ++q) {
      if (!(rdma & (1u << q))) continue;
      const std::int64_t slot = ll_mirror_offset(ctx, q, ctx.rank) + offsetof(protocol::LlHeader, published);
      ll_transport(ctx).put_warp(q, slot, published_offset, sizeof(protocol::LlPublished), threadIdx.x);
    }
    __syncwarp();
  }
  if (threadIdx.x == 0) {
    ll_signal_peers<kRdma>(ctx, &protocol::LlHeader::ready, epoch, ctx.state->abort != 0);
    ll_stamp(ctx, kTraceReadySignalled);
  }
}

// Called by every block of a send phase at its end: the last block to finish publishes
// and signals `ready`.
template <bool kRdma>
__device__ __forceinline__ void ll_finish_send(const LlContext& ctx, std::uint64_t epoch) {
  // Its own counter: a receive phase in the same launch may already count its blocks.
  if (!ll_last_block(&ctx.state->ll_send_ticket[ctx.parity]) || threadIdx.x >= 32) return;
  ll_publish_ready<kRdma>(ctx, epoch);
}

// ---- per-block `done` (ctx.block_done) -----------------------------------------------
// The block's last warp (lane q < num_ranks), after every peer's `ready`: how many blocks
// signal peer q's `done` (ours: this call's) into peer_blocks (shared; read after the
// block's next barrier). The value is stored, so the load is complete before this block
// signals its `done` (after which a peer's next op may publish anew); the last warp holds
// the fewest items, so the load's round trip is off the items' path.
__device__ __forceinline__ void ll_load_peer_blocks(const LlContext& ctx, unsigned arrived, int* peer_blocks) {
  const int q = static_cast<int>(threadIdx.x) - static_cast<int>(blockDim.x) + 32;
  if (!ctx.block_done || q < 0 || q >= ctx.num_ranks) return;
  const bool theirs = q != ctx.rank && (arrived & (1u << q));
  peer_blocks[q] = theirs ? ll_header(ctx, q)->published.done_blocks : q == ctx.rank ? ctx.shape.done_blocks : 0;
}

// One thread, once its block's work is done (the block synchronized): this block's `done`,
// in this rank's header, where every peer reads it (a store into each peer's header waited
// on each destination in turn; H100, one token per rank at 8 ranks: combine 9.3 -> 9.1 us,
// kernel start to end, 8 pairs back to back 18.6 -> 18.3 us a pair). With `wrote_peers`
// (the block wrote into peers' memory) a fence publishes those writes first. Without,
// `done` says only that the block finished reading the peers' memory: every value it
// loaded was used before the block's barrier, so those loads are complete before the
// signal is issued and no write after it can reach them; a fence would only wait for the
// block's own output stores (H100, one token per rank: combine 13.5 -> 13.1 us at 8 ranks,
// 10.2 -> 9.8 us at 2).
__device__ __forceinline__ void ll_signal_block_done(const LlContext& ctx, std::uint64_t epoch, bool failed,
                                                     bool wrote_peers) {
  if (ctx.delay_ns != 0) device::sleep_until(device::global_timer_ns() + ctx.delay_ns);
  if (wrote_peers) __threadfence();  // block_done: every peer on this GPU
  const std::uint64_t tag = protocol::make_tag(epoch, ctx.op, failed);
  device::store_relaxed(&ll_header(ctx, ctx.rank)->done_blocks[blockIdx.x], tag, true);
  ll_stamp(ctx, kTraceLastBlock, true);
}

// Whole block, after its own ll_signal_block_done: waits for the `done` of every block of
// every peer (peer_blocks, from ll_load_peer_blocks) and of this rank's other blocks, each
// in its rank's header.
// wait_stats[q] (if given) accumulates the ns waited for peer q's last block.
__device__ __forceinline__ LlArrivals ll_wait_block_done(const LlContext& ctx, std::uint64_t epoch,
                                                         protocol::Phase phase, const int* peer_blocks,
                                                         std::int64_t* wait_stats = nullptr) {
  __shared__ bool failed;
  __shared__ unsigned long long waited[kMaxNvlRanks];
  if (threadIdx.x < kMaxNvlRanks) waited[threadIdx.x] = 0;
  if (threadIdx.x == 0) failed = false;
  __syncthreads();
  const int stride = protocol::kLlDoneSlots / ctx.num_ranks;
  const std::uint64_t expected = protocol::make_tag(epoch, ctx.op);
  for (int i = threadIdx.x; i < ctx.num_ranks * stride; i += blockDim.x) {
    const int q = i / stride, b = i - q * stride;
    if (b >= peer_blocks[q] || (q == ctx.rank && b == static_cast<int>(blockIdx.x))) continue;
    const std::uint64_t start = device::global_timer_ns();
    const std::uint64_t* flag = &ll_header(ctx, q)->done_blocks[b];
    const auto result = device::wait_tag(flag, expected, ctx.timeout_ns, ctx.error, ctx.rank, phase, q,
                                         /*record_timeout=*/false, /*gpu_scope=*/true);
    if (result == device::WaitResult::kOk) {
      if (wait_stats != nullptr) atomicMax(&waited[q], device::global_timer_ns() - start);
    } else {
      if (result == device::WaitResult::kTimeout) ll_record_timeout<false>(ctx, phase, q, expected, flag, start);
      failed = true;
    }
  }
  __syncthreads();
  if (wait_stats != nullptr && threadIdx.x < ctx.num_ranks) {
    atomicAdd(reinterpret_cast<unsigned long long*>(&wait_stats[threadIdx.x]), waited[threadIdx.x]);
  }
  return ll_all_arrived(ctx, failed);
}

// Called by every block at its end: the last block to finish tells every peer that this
// rank is done reading its half, waits until every unmasked peer is done reading ours,
// and completes the op: epoch + 1. With ctx.block_done, every block tells every peer and
// block 0 waits (peer_blocks: from ll_load_peer_blocks).
template <bool kRdma>
__device__ __forceinline__ void ll_done_barrier(const LlContext& ctx, std::uint64_t epoch, bool failed,
                                                protocol::Phase phase, const int* peer_blocks = nullptr) {
  if (threadIdx.x == 0) ll_stamp(ctx, kTraceItemsDone, true);
  if (!kRdma && ctx.block_done) {
    __syncthreads();
    if (threadIdx.x == 0) ll_signal_block_done(ctx, epoch, failed, /*wrote_peers=*/false);  // a receive reads
    if (blockIdx.x != 0) return;
    ll_wait_block_done(ctx, epoch, phase, peer_blocks);
    if (threadIdx.x == 0) {
      ll_stamp(ctx, kTraceDoneSeen);
      ctx.state->ll_epoch[ctx.parity] = epoch;  // always move on (below)
    }
    return;
  }
  if (!ll_last_block(&ctx.state->ll_ticket[ctx.parity])) return;
  if (threadIdx.x == 0) {
    ll_stamp(ctx, kTraceLastBlock);
    ll_signal_peers<kRdma>(ctx, &protocol::LlHeader::done, epoch, failed);
  }
  ll_wait_peers<kRdma>(ctx, &protocol::LlHeader::done, epoch, phase, nullptr, /*signalled_self=*/true);
  if (threadIdx.x == 0) ll_stamp(ctx, kTraceDoneSeen);
  // Always move on, failed or not: a later op (a graph replay, which no host check stops)
  // must never accept this op's flags or plan; the failure itself is in the error record
  // and in the flags' failed bit.
  if (threadIdx.x == 0) ctx.state->ll_epoch[ctx.parity] = epoch;
}

}  // namespace moe_ep::kernels
