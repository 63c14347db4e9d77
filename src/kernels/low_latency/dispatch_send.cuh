// Low-latency dispatch, sending phase. Block 0 ranks every (token, slot) entry among this
// rank's entries for the same expert (the entry's slot offset on the owner) and counts
// entries per expert; the other blocks cast (FP8) or copy (BF16) each token once into
// this rank's half. The last block to finish publishes and signals every peer.
#pragma once
#include <algorithm>
#include <cstdint>

#include "device/copy.cuh"
#include "moe_ep/low_latency.hpp"
#include "kernels/low_latency/fp8_cast.cuh"
#include "kernels/low_latency/ll_collective.cuh"
#include "kernels/low_latency/ll_direct_layout.hpp"

namespace moe_ep::kernels {

// Ranking entries: every warp walks its own segment of the entries with its own per-expert
// counters, then one pass turns them into per-segment bases; when all warps' counters do
// not fit kLlSegmentedRankBytes (many experts), one warp walks all entries.
inline constexpr int kLlSegmentedRankBytes = 48 * 1024;  // counters[warps][E] + int16 ids + int16 ranks
__host__ __device__ inline bool ll_rank_in_segments(int num_experts, int num_entries) {
  // A few entries (decode with a handful of tokens): one warp is quicker than a merge.
  return num_entries > 32 * kLlWarps && 4 * kLlWarps * num_experts + 4 * num_entries <= kLlSegmentedRankBytes;
}
inline constexpr int kLlSingleWarpRankBytes = 4 * kMaxExperts + 2 * kMaxLowLatencyTokens * kMaxTopk;  // counters + int16 ids
// The direct dispatch's (dispatch_direct.cuh): two counters per expert + a block's entries
// (one block may own every token).
inline constexpr int kLlDirectRankBytes = 8 * kMaxExperts + 4 * kMaxLowLatencyTokens * kMaxTopk;
inline constexpr int kLlDispatchSharedBytes =
    std::max({kLlSegmentedRankBytes, kLlSingleWarpRankBytes, kLlDirectRankBytes});

__device__ __forceinline__ std::int64_t load_expert(const LlDispatchSendParams& p, int i) {
  return p.topk_idx_int32 ? static_cast<const std::int32_t*>(p.topk_idx)[i]
                          : static_cast<const std::int64_t*>(p.topk_idx)[i];
}

// Block 0: ids into shared memory (int16) and the half (int32), checked.
__device__ __forceinline__ void load_entries(const LlDispatchSendParams& p, std::uint8_t* half, std::int16_t* ids) {
  const LlContext& ctx = p.ctx;
  const int num_entries = p.num_tokens * p.num_topk;
  std::int32_t* ids_out = reinterpret_cast<std::int32_t*>(half + ctx.layout.topk_ids_offset);
  // kBatch loads in flight per thread before any store (the stores could alias them, so
  // the compiler would not hoist the next load above them).
  constexpr int kBatch = 8;
  for (int first = threadIdx.x; first < num_entries; first += kBatch * blockDim.x) {
    std::int64_t batch[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = first + b * blockDim.x;
      batch[b] = i < num_entries ? load_expert(p, i) : -1;
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = first + b * blockDim.x;
      if (i >= num_entries) break;
      std::int64_t e = batch[b];
      if (e < -1 || e >= p.num_experts) {
        device::record_error(ctx.error, protocol::ErrorCode::kBadExpertId, ctx.rank,
                             protocol::Phase::kLowLatencyDispatchSend, -1, i / p.num_topk, i % p.num_topk, e,
                             p.num_experts);
        ctx.state->abort = 1;
        e = -1;
      }
      ids[i] = static_cast<std::int16_t>(e);
      ids_out[i] = static_cast<std::int32_t>(e);  // receivers read them
    }
  }
}

// One warp walks entries [begin, end) in order, 32 at a time: lanes naming the same
// expert take consecutive ranks after that expert's running count in `counters`. ids[i]
// is entry i's expert (-1: none).
template <typename Ids, typename Emit>
__device__ __forceinline__ void walk_entries(const Ids& ids, int begin, int end, int* counters, int lane, Emit emit) {
  const unsigned lower_lanes = (1u << lane) - 1;
  for (int base = begin; base < end; base += 32) {
    const int i = base + lane;
    const int e = i < end ? ids[i] : -1;
    const unsigned same = __match_any_sync(0xffffffffu, e);
    const int before = e >= 0 ? counters[e] : 0;
    __syncwarp();
    if (e >= 0 && lane == __ffs(same) - 1) counters[e] = before + __popc(same);
    __syncwarp();
    if (i < end) emit(i, e >= 0 ? before + __popc(same & lower_lanes) : -1);
  }
}

// Block 0: validates ids, writes them (int32) and each entry's rank among this rank's
// entries for its expert, in (token, slot) order, and the per-expert counts.
__device__ __forceinline__ void rank_entries(const LlDispatchSendParams& p, std::uint8_t* half) {
  extern __shared__ int shared[];
  const LlContext& ctx = p.ctx;
  const int num_entries = p.num_tokens * p.num_topk;
  const int num_experts = p.num_experts;
  std::int32_t* ranks_out = reinterpret_cast<std::int32_t*>(half + ctx.layout.ranks_offset);
  std::int32_t* counts_out = reinterpret_cast<std::int32_t*>(half + ctx.layout.expert_counts_offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const auto store_rank = [&](int i, int rank) {
    ranks_out[i] = rank;  // receivers read them
    p.combine_slots[i] = rank;
  };
  if (!ll_rank_in_segments(num_experts, num_entries)) {
    int* counters = shared;                                                    // [num_experts]
    std::int16_t* ids = reinterpret_cast<std::int16_t*>(shared + num_experts);  // [entries]
    for (int e = threadIdx.x; e < num_experts; e += blockDim.x) counters[e] = 0;
    load_entries(p, half, ids);
    __syncthreads();
    if (warp == 0) walk_entries(ids, 0, num_entries, counters, lane, store_rank);
    __syncthreads();
    for (int e = threadIdx.x; e < num_experts; e += blockDim.x) counts_out[e] = counters[e];
    return;
  }
  int* counters = shared;                                                                  // [warps][num_experts]
  std::int16_t* ids = reinterpret_cast<std::int16_t*>(shared + kLlWarps * num_experts);    // [entries]
  std::int16_t* segment_rank = ids + num_entries;                                          // [entries]
  for (int i = threadIdx.x; i < kLlWarps * num_experts; i += blockDim.x) counters[i] = 0;
  load_entries(p, half, ids);
  __syncthreads();
  // Warp w ranks segment w within itself.
  const int segment = (num_entries + kLlWarps * 32 - 1) / (kLlWarps * 32) * 32;
  const int begin = min(num_entries, warp * segment);
  walk_entries(ids, begin, min(num_entries, begin + segment), counters + warp * num_experts, lane,
               [&](int i, int rank) { segment_rank[i] = static_cast<std::int16_t>(rank); });
  __syncthreads();
  // Per expert, each segment's base is the count of the segments before it.
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) {
    int running = 0;
    for (int w = 0; w < kLlWarps; ++w) {
      const int count = counters[w * num_experts + e];
      counters[w * num_experts + e] = running;
      running += count;
    }
    counts_out[e] = running;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < num_entries; i += blockDim.x) {
    const int e = ids[i];
    store_rank(i, e >= 0 ? segment_rank[i] + counters[(i / segment) * num_experts + e] : -1);
  }
}

// Block 0, after rank_entries: the expert counts, top-k ids and ranks into the mirror slot
// of every RDMA peer (at the half's own offsets).
__device__ __forceinline__ void push_entries(const LlDispatchSendParams& p, unsigned rdma) {
  const LlContext& ctx = p.ctx;
  const std::int64_t own = static_cast<std::int64_t>(ctx.parity) * ctx.half_bytes;
  const std::int64_t entry_bytes = 4ll * p.num_tokens * p.num_topk;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const auto t = ll_transport(ctx);
  for (int q = warp; q < ctx.num_ranks; q += kLlWarps) {
    if (!(rdma & (1u << q))) continue;
    const std::int64_t slot = ll_mirror_offset(ctx, q, ctx.rank);
    t.put_warp(q, slot + ctx.layout.expert_counts_offset, own + ctx.layout.expert_counts_offset, 4ll * p.num_experts, lane);
    t.put_warp(q, slot + ctx.layout.topk_ids_offset, own + ctx.layout.topk_ids_offset, entry_bytes, lane);
    t.put_warp(q, slot + ctx.layout.ranks_offset, own + ctx.layout.ranks_offset, entry_bytes, lane);
  }
}

// One warp: the RDMA peers (bit q) owning an expert of token t.
__device__ __forceinline__ unsigned token_rdma_destinations(const LlDispatchSendParams& p, unsigned rdma, int t, int lane) {
  unsigned mine = 0;
  if (lane < p.num_topk) {
    const std::int64_t e = load_expert(p, t * p.num_topk + lane);
    if (e >= 0 && e < p.num_experts) mine = 1u << static_cast<int>(e / (p.num_experts / p.ctx.num_ranks));
  }
  return __reduce_or_sync(0xffffffffu, mine) & rdma;
}

// One warp: channels [begin, end) of staged row t (payload, and FP8 scales) into the
// mirror slot of every RDMA peer that receives the token.
__device__ __forceinline__ void push_row_chunk(const LlDispatchSendParams& p, unsigned destinations, int t, int begin,
                                               int end, bool bf16, int lane) {
  const LlContext& ctx = p.ctx;
  const std::int64_t row = ctx.layout.rows_offset + t * ctx.shape.row_stride;
  const std::int64_t own = static_cast<std::int64_t>(ctx.parity) * ctx.half_bytes + row;
  const auto tr = ll_transport(ctx);
  __syncwarp();  // the chunk's stores are visible to the whole warp
  for (int q = 0; q < ctx.num_ranks; ++q) {
    if (!(destinations & (1u << q))) continue;
    const std::int64_t slot = ll_mirror_offset(ctx, q, ctx.rank) + row;
    if (bf16) {
      tr.put_warp(q, slot + 2 * begin, own + 2 * begin, 2 * (end - begin), lane);
    } else {
      tr.put_warp(q, slot + begin, own + begin, end - begin, lane);
      tr.put_warp(q, slot + p.hidden + 4 * (begin / 128), own + p.hidden + 4 * (begin / 128), 4 * ((end - begin) / 128), lane);
    }
  }
}

// Every block but 0 (unless alone): each token once into this rank's half, one chunk of
// kLlStageChunkChannels channels per warp and work item; chunks of tokens that RDMA peers
// receive are pushed into their mirror slots right away.
template <bool kRdma>
__device__ __forceinline__ void stage_rows(const LlDispatchSendParams& p, std::uint8_t* half, unsigned rdma) {
  const int first_block = gridDim.x > 1 ? 1 : 0;
  const int lane = threadIdx.x % 32;
  const int worker = (blockIdx.x - first_block) * kLlWarps + threadIdx.x / 32;
  const int num_workers = (gridDim.x - first_block) * kLlWarps;
  const int chunks = (p.hidden + kLlStageChunkChannels - 1) / kLlStageChunkChannels;
  std::uint8_t* rows = half + p.ctx.layout.rows_offset;
  const std::int64_t stride = p.ctx.shape.row_stride;
  const bool bf16 = p.ctx.shape.format == static_cast<int>(protocol::LlFormat::kBf16);
  for (int item = worker; item < p.num_tokens * chunks; item += num_workers) {
    const int t = item / chunks;
    const int begin = (item % chunks) * kLlStageChunkChannels;
    const int end = min(begin + kLlStageChunkChannels, p.hidden);
    const std::uint16_t* src = p.x + t * p.x_row_stride;
    std::uint8_t* dst = rows + t * stride;
    if (bf16) {
      device::warp_copy_row(reinterpret_cast<int4*>(dst + 2 * begin), reinterpret_cast<const int4*>(src + begin),
                            (end - begin) * 2 / 16, lane);
    } else {
      warp_cast_row_fp8(src, dst, reinterpret_cast<float*>(dst + p.hidden), begin, end, p.round_scale, lane);
    }
    if constexpr (kRdma) {
      const unsigned destinations = token_rdma_destinations(p, rdma, t, lane);
      if (destinations != 0) push_row_chunk(p, destinations, t, begin, end, bf16, lane);
    }
  }
}

// Every block of the kernel; the last one to finish signals `ready` to every peer.
// Needs ll_dispatch_send_shared_bytes of dynamic shared memory.
// kRdma: some peers are reached by RDMA (kept out of the one-node kernels' registers).
template <bool kRdma>
__device__ __forceinline__ void ll_dispatch_send_phase(const LlDispatchSendParams& p) {
  const LlContext& ctx = p.ctx;
  const std::uint64_t epoch = ll_op_epoch(ctx);
  std::uint8_t* half = ll_half(ctx, ctx.rank);
  const unsigned rdma = kRdma ? ll_rdma_peers(ctx) : 0u;
  if (blockIdx.x == 0) {
    rank_entries(p, half);
    if (kRdma && rdma != 0) {
      __syncthreads();  // the block's entries are written before any warp pushes them
      push_entries(p, rdma);
    }
  }
  if (p.stage_rows && (blockIdx.x > 0 || gridDim.x == 1)) stage_rows<kRdma>(p, half, rdma);
  ll_finish_send<kRdma>(ctx, epoch);
}

// Dynamic shared memory of the sending phase (or of a direct dispatch of num_blocks): the
// ranking's.
inline int ll_dispatch_send_shared_bytes(const LlDispatchSendParams& p, int num_blocks) {
  if (p.ctx.direct_dispatch) {
    return 8 * p.num_experts + 4 * ll_direct_block_tokens(p.num_tokens, p.direct_parts, num_blocks) * p.num_topk;
  }
  const int entries = p.num_tokens * p.num_topk;
  if (ll_rank_in_segments(p.num_experts, entries)) return 4 * kLlWarps * p.num_experts + 4 * entries;
  return 4 * p.num_experts + 2 * entries;
}

}  // namespace moe_ep::kernels
