// Low-latency dispatch when every rank is in this process on this GPU (ctx.direct_dispatch),
// in one launch: senders write each token straight into its slots in the receivers'
// outputs. On one device no link is crossed, and each byte moves once: the token is read
// once, cast once, and written once per selected expert (a staged copy would be written
// and read again).
//   1. block 0 ranks the entries (dispatch_send.cuh), publishes the counts and its output
//      pointers and signals `ready`;
//   2. every warp loads its first chunk of a token meanwhile; after every peer's `ready`,
//      each block takes the slot of this rank's first entry per expert (the counts of the
//      ranks before it), each warp casts its chunks and writes them into every slot the
//      token names, then a warp per local expert lays out the receive side (counts,
//      layout_range, empty slots);
//   3. the last block signals `done` (my tokens are in your outputs) and waits for every
//      peer's.
// The slots are those the pulling receive picks (source rank, then token order), so
// combine and the handle are unchanged. Not with a receive hook (a send phase alone must
// not wait for peers) nor with shrink (every rank must agree on which sources take part;
// with shrink each receiver decides that alone): those pull (dispatch_recv.cuh).
#pragma once
#include <cstdint>

#include "kernels/low_latency/dispatch_recv.cuh"
#include "kernels/low_latency/dispatch_send.cuh"
#include "kernels/low_latency/fp8_cast.cuh"

namespace moe_ep::kernels {

inline constexpr protocol::Phase kLlDirectPhase = protocol::Phase::kLowLatencyDispatchSend;

// A receiver's outputs, from its published header.
struct DirectOutputs {
  std::uint8_t* recv_x;
  void* recv_scales;
  std::int32_t* src_info;
};

// Per block: the slot base of this rank's entries per global expert, and every arrived
// receiver's outputs.
struct DirectTargets {
  const int* first_slot;  // [num_experts], dynamic shared memory
  DirectOutputs* outputs;  // [num_ranks], shared
  unsigned arrived;
};

// Whole block, after every peer's `ready`: this rank's first slot for expert e at its
// owner is the entries the ranks before it send to e (they come first in the layout).
__device__ __forceinline__ void load_first_slots(const LlDispatchSendParams& p, unsigned arrived, int* first_slot,
                                                 DirectOutputs* outputs) {
  const LlContext& ctx = p.ctx;
  for (int e = threadIdx.x; e < p.num_experts; e += blockDim.x) {
    std::int32_t counts[kMaxNvlRanks];
#pragma unroll
    for (int s = 0; s < kMaxNvlRanks; ++s) {
      counts[s] = 0;
      if (s < ctx.rank && (arrived & (1u << s))) {
        counts[s] = reinterpret_cast<const std::int32_t*>(ll_half(ctx, s) + ctx.layout.expert_counts_offset)[e];
      }
    }
    int first = 0;
#pragma unroll
    for (int s = 0; s < kMaxNvlRanks; ++s) first += counts[s];
    first_slot[e] = first;
  }
  if (static_cast<int>(threadIdx.x) < ctx.num_ranks && (arrived & (1u << threadIdx.x))) {
    const protocol::LlPublished& pub = ll_header(ctx, threadIdx.x)->published;
    outputs[threadIdx.x] = {pub.recv_x, pub.recv_scales, pub.src_info};
  }
  __syncthreads();
}

// Direct items: each lane holds 16 consecutive channels per step (two int4 of bf16), so a
// 128-channel group is 8 lanes and every store is 16 bytes (FP8) or two of them (BF16).
inline constexpr int kDirectLaneChannels = 16;
inline constexpr int kDirectStepChannels = 32 * kDirectLaneChannels;
inline constexpr int kDirectSteps = kLlDirectChunkChannels / kDirectStepChannels;

// One warp: the scale of every 128-channel group of the chunk (group g in lane g), from
// the lanes that computed it (lane 8j of step u holds group 4u + j).
__device__ __forceinline__ float gather_group_scales(const float (&scale_inv)[kDirectSteps], int lane) {
  float mine = 0.0f;
#pragma unroll
  for (int u = 0; u < kDirectSteps; ++u) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float s = __shfl_sync(0xffffffffu, scale_inv[u], 8 * j);
      if (lane == 4 * u + j) mine = s;
    }
  }
  return mine;
}

// One warp: the scales of the chunk's groups (first group `group0`, `num_groups` of them)
// into slot `slot` of local expert `e` at a receiver, fp32 or packed UE8M0 (column-major).
__device__ __forceinline__ void write_chunk_scales(const LlDispatchRecvParams& r, void* recv_scales, int e, int slot,
                                                   int group0, int num_groups, float group_scale, int lane) {
  const std::int64_t slots = static_cast<std::int64_t>(r.ctx.num_ranks) * r.max_tokens;
  const int num_scales = r.hidden / 128;
  if (!r.ue8m0) {
    if (lane < num_groups) {
      static_cast<float*>(recv_scales)[(static_cast<std::int64_t>(e) * num_scales + group0 + lane) * slots + slot] =
          group_scale;
    }
    return;
  }
  // Four groups' exponents per int32; a chunk starts on a multiple of four groups.
  const std::uint32_t exponent = (__float_as_uint(group_scale) >> 23) & 0xffu;
  std::uint32_t packed = 0;
#pragma unroll
  for (int b = 0; b < 4; ++b) {
    const std::uint32_t part = __shfl_sync(0xffffffffu, exponent, (4 * lane + b) & 31);
    if (4 * lane + b < num_groups) packed |= part << (8 * b);
  }
  const int columns = (num_scales + 3) / 4;
  if (4 * lane < num_groups) {
    static_cast<std::uint32_t*>(recv_scales)[(static_cast<std::int64_t>(e) * columns + group0 / 4 + lane) * slots + slot] =
        packed;
  }
}

// A warp's work item: channels [begin, end) of token t.
struct DirectItem {
  int t, begin, end;
};
__device__ __forceinline__ DirectItem direct_item(const LlDispatchSendParams& p, int item) {
  const int chunks = (p.hidden + kLlDirectChunkChannels - 1) / kLlDirectChunkChannels;
  const int begin = (item % chunks) * kLlDirectChunkChannels;
  return {item / chunks, begin, min(begin + kLlDirectChunkChannels, p.hidden)};
}
using DirectRow = int4[kDirectSteps][2];

// One warp: the item's bf16 channels into registers (x is ready before the op starts).
__device__ __forceinline__ void load_direct_row(const LlDispatchSendParams& p, const DirectItem& it, int lane,
                                                DirectRow& v) {
  const int4* src = reinterpret_cast<const int4*>(p.x + it.t * p.x_row_stride);
#pragma unroll
  for (int u = 0; u < kDirectSteps; ++u) {
    const int c = it.begin + u * kDirectStepChannels + lane * kDirectLaneChannels;
#pragma unroll
    for (int h = 0; h < 2; ++h) v[u][h] = c < it.end ? device::load_stream(src + c / 8 + h) : make_int4(0, 0, 0, 0);
  }
}

// One warp: the item's channels (loaded in v), cast (FP8) or copied (BF16) once and written
// into every slot the token's entries name.
__device__ __forceinline__ void write_direct_chunk(const LlDispatchSendParams& p, const LlDispatchRecvParams& r,
                                                   const DirectTargets& targets, const DirectItem& it,
                                                   const DirectRow& v, int lane) {
  const LlContext& ctx = p.ctx;
  const int t = it.t, begin = it.begin, end = it.end;
  // Lane k: entry k's receiver and row there (e_local * N + slot), or -1.
  const int num_local = p.num_experts / ctx.num_ranks;
  const int slots = ctx.num_ranks * r.max_tokens;
  int owner = -1, row = -1;
  if (lane < p.num_topk) {
    // Validated by block 0 (a bad id fails the op before any item); its rank is the
    // handle's combine slot, written by block 0 before `ready`.
    const int i = t * p.num_topk + lane;
    const int e = static_cast<int>(load_expert(p, i));
    if (e >= 0 && (targets.arrived & (1u << (e / num_local)))) {
      const int slot = targets.first_slot[e] + p.combine_slots[i];
      if (slot < slots) {  // else the receiver reports the overflow (kCapacity)
        owner = e / num_local;
        row = (e - owner * num_local) * slots + slot;
      }
    }
  }
  unsigned entries = __ballot_sync(0xffffffffu, row >= 0);
  if (entries == 0) return;

  const bool bf16 = !r.fp8;
  uint4 q[kDirectSteps];
  float scale_inv[kDirectSteps];
  if (!bf16) {
#pragma unroll
    for (int u = 0; u < kDirectSteps; ++u) {
      float amax = fmaxf(abs_max8(v[u][0]), abs_max8(v[u][1]));
#pragma unroll
      for (int offset = 4; offset >= 1; offset >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
      const Fp8GroupScale s = fp8_group_scale(amax, p.round_scale);
      const uint2 low = cast8_e4m3(v[u][0], s.scale), high = cast8_e4m3(v[u][1], s.scale);
      q[u] = make_uint4(low.x, low.y, high.x, high.y);
      scale_inv[u] = s.scale_inv;
    }
  }
  const float group_scale = bf16 ? 0.0f : gather_group_scales(scale_inv, lane);
  const int payload_bytes = bf16 ? 2 * p.hidden : p.hidden;
  while (entries != 0) {
    const int k = __ffs(entries) - 1;
    entries &= entries - 1;
    const int d = __shfl_sync(0xffffffffu, owner, k);
    const int dest_row = __shfl_sync(0xffffffffu, row, k);
    const DirectOutputs& out = targets.outputs[d];
    std::uint8_t* dst = out.recv_x + static_cast<std::int64_t>(dest_row) * payload_bytes;
#pragma unroll
    for (int u = 0; u < kDirectSteps; ++u) {
      const int c = begin + u * kDirectStepChannels + lane * kDirectLaneChannels;
      if (c >= end) continue;
      if (bf16) {
        reinterpret_cast<int4*>(dst + 2 * c)[0] = v[u][0];
        reinterpret_cast<int4*>(dst + 2 * c)[1] = v[u][1];
      } else {
        *reinterpret_cast<uint4*>(dst + c) = q[u];
      }
    }
    if (!bf16) {
      write_chunk_scales(r, out.recv_scales, dest_row / slots, dest_row % slots, begin / 128, (end - begin) / 128,
                         group_scale, lane);
    }
    if (begin == 0 && lane == 0) out.src_info[dest_row] = t;
  }
}

// Whole grid, after every peer's `ready`: the receive side of this rank, a warp per local
// expert (its layout and counts, then its empty slots).
__device__ __forceinline__ void direct_layout(const LlDispatchRecvParams& r, unsigned arrived) {
  const int lane = threadIdx.x % 32;
  for (int e = blockIdx.x * kLlWarps + threadIdx.x / 32; e < r.num_experts / r.ctx.num_ranks;
       e += gridDim.x * kLlWarps) {
    mark_empty_slots(r, e, ll_experts_layout<false>(r, arrived, e, /*width=*/32, lane), lane);
  }
}

// The whole op in one launch (every block): block 0 ranks and publishes, every block waits
// for every peer's `ready`, lays out its share of the receive side and writes its tokens
// into the receivers; the last block signals `done` to every peer and waits for theirs.
// Needs ll_dispatch_send_shared_bytes of dynamic shared memory.
__device__ __forceinline__ void ll_direct_dispatch(const LlDispatchSendParams& p, const LlDispatchRecvParams& r) {
  extern __shared__ int shared[];  // block 0's ranking, then [num_experts] first slots
  __shared__ DirectOutputs outputs[kMaxNvlRanks];
  const LlContext& ctx = p.ctx;
  const std::uint64_t epoch = ll_op_epoch(ctx);
  const int lane = threadIdx.x % 32;
  const int num_items = p.num_tokens * ((p.hidden + kLlDirectChunkChannels - 1) / kLlDirectChunkChannels);
  const int first_item = blockIdx.x * kLlWarps + threadIdx.x / 32;
  // This warp's first row loads while block 0 ranks and the peers get ready.
  DirectRow row;
  if (first_item < num_items) load_direct_row(p, direct_item(p, first_item), lane, row);
  std::uint8_t* half = ll_half(ctx, ctx.rank);
  if (blockIdx.x == 0) {
    rank_entries(p, half);
    __syncthreads();
    if (threadIdx.x == 0) {
      ll_header(ctx, ctx.rank)->published = ctx.shape;
      ll_signal_peers<false>(ctx, &protocol::LlHeader::ready, epoch, ctx.state->abort != 0);
      ll_stamp(ctx, kTraceReadySignalled);
    }
  }
  const LlArrivals arrivals = ll_wait_peers<false>(ctx, &protocol::LlHeader::ready, epoch, kLlDirectPhase);
  if (blockIdx.x == 0 && threadIdx.x == 0) ll_stamp(ctx, kTraceReadySeen);
  const bool failed = arrivals.failed || !ll_peers_share_shape<false>(ctx, arrivals.arrived, kLlDirectPhase);
  if (!failed) {
    load_first_slots(p, arrivals.arrived, shared, outputs);
    if (blockIdx.x == 0 && threadIdx.x == 0) ll_stamp(ctx, kTraceSlotsLoaded);
    const DirectTargets targets{shared, outputs, arrivals.arrived};
    for (int item = first_item; item < num_items; item += gridDim.x * kLlWarps) {
      const DirectItem it = direct_item(p, item);
      if (item != first_item) load_direct_row(p, it, lane, row);
      write_direct_chunk(p, r, targets, it, row, lane);
    }
    // The receive side after the tokens: it needs only the counts, and overlaps other
    // blocks' writes.
    direct_layout(r, arrivals.arrived);
    if (blockIdx.x == 0 && threadIdx.x == 0) ll_stamp(ctx, kTraceLaidOut);
  }
  // Every block's writes, then `done` to every peer (failed: the receiver reports it), and
  // every peer's tokens in our outputs complete the op.
  if (threadIdx.x == 0) ll_stamp(ctx, kTraceItemsDone, true);
  if (!ll_last_block(&ctx.state->ll_ticket[ctx.parity])) return;
  if (threadIdx.x == 0) {
    ll_stamp(ctx, kTraceLastBlock);
    ll_signal_peers<false>(ctx, &protocol::LlHeader::done, epoch, failed || ctx.state->abort != 0);
  }
  const LlArrivals written =
      ll_wait_peers<false>(ctx, &protocol::LlHeader::done, epoch, kLlDirectPhase, r.wait_stats, /*signalled_self=*/true);
  if (threadIdx.x == 0) {
    ll_stamp(ctx, kTraceDoneSeen);
    if (failed || written.failed) ctx.state->abort = 1;
    ctx.state->ll_epoch[ctx.parity] = epoch;  // always move on (see ll_done_barrier)
  }
}

}  // namespace moe_ep::kernels
