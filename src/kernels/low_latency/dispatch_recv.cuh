// Low-latency dispatch, receiving phase. Block 0 plans: waits for every peer's `ready`,
// checks shapes, and lays out each local expert's slots by (source rank, source token)
// from the senders' per-expert counts (layout_range, recv_count); it releases the plan
// to the other blocks through device memory. Then every warp takes (source, token)
// pairs, reads the token once from the source's half and writes it into each of its
// local experts' slots (src_info, scales likewise). Ends with the done barrier.
#pragma once
#include <cstdint>

#include "device/copy.cuh"
#include "kernels/low_latency/ready_words.cuh"
#include "kernels/low_latency/ll_collective.cuh"

namespace moe_ep::kernels {

inline constexpr protocol::Phase kLlDispatchRecvPhase = protocol::Phase::kLowLatencyDispatchRecv;

struct LlPlan {
  unsigned arrived;
  bool failed;
};

__device__ __forceinline__ std::uint64_t pack_plan(std::uint64_t epoch, unsigned arrived, bool failed) {
  return (epoch << 16) | (static_cast<std::uint64_t>(arrived) << 1) | (failed ? 1u : 0u);
}

// Lanes per local expert when one warp lays out several (make_plan: one block does them
// all): the rank count rounded up to a power of two.
__device__ __forceinline__ int ll_layout_width(int num_ranks) {
  int width = 1;
  while (width < num_ranks) width <<= 1;
  return width;
}

// One warp: the receive layout of local experts e0, e0 + 1, ... (32 / width of them, width a
// power of two >= the rank count; lane g * width + s reads source s's count for expert
// e0 + g): each expert's layout_range row
// (count << 32 | first slot), recv_count and cumulative stats. Slots past recv_count are
// left as they were (deep_ep's contract: only the first recv_count are valid; marking them
// cost one token per rank at 8 ranks 0.7 us a dispatch). An overflow (only tokens naming the expert
// in several top-k slots cause one) or an RDMA source above its mirror slot is recorded,
// aborts the op, and counts as 0 rows. own_counts: this rank's count per global expert,
// if the caller holds it (else it is read from this rank's half, like a peer's).
// tagged_epoch (a direct dispatch's): the peers' counts are tagged words of that op
// (ready_words.cuh); a failed wait aborts the op and counts as 0 rows.
template <bool kRdma>
__device__ __forceinline__ void ll_experts_layout(const LlDispatchRecvParams& p, unsigned arrived, int e0, int width,
                                                 int lane, const int* own_counts = nullptr,
                                                 std::uint64_t tagged_epoch = 0) {
  const LlContext& ctx = p.ctx;
  const int slots = ctx.num_ranks * p.max_tokens;
  const int num_local = p.num_experts / ctx.num_ranks;
  const int s = lane % width, e = e0 + lane / width;
  const bool valid = e < num_local;
  // Both loads before any store (the stores could alias them).
  const int cumulative = p.cumulative_recv_stats != nullptr && valid && s == 0 ? p.cumulative_recv_stats[e] : 0;
  int count = 0;
  if (valid && s < ctx.num_ranks && (arrived & (1u << s))) {
    const int global_e = ctx.rank * num_local + e;
    if (s == ctx.rank && own_counts != nullptr) {
      count = own_counts[global_e];
    } else if (tagged_epoch != 0) {
      const LlWordRead read = ll_read_word(ctx, s, ll_count_word(ctx, s, global_e, tagged_epoch), tagged_epoch,
                                           kLlDirectPhase);
      count = read.ok ? static_cast<int>(read.value) : 0;
      if (!read.ok) ctx.state->abort = 1;
    } else {
      count = reinterpret_cast<const std::int32_t*>(ll_source_half<kRdma>(ctx, s) + ctx.layout.expert_counts_offset)[global_e];
    }
  }
  if (count > p.max_tokens && ll_rdma_peer<kRdma>(ctx, s)) {
    // The combine's mirror slot keeps max_tokens rows per (expert, home).
    device::record_error(ctx.error, protocol::ErrorCode::kCapacity, ctx.rank, kLlDispatchRecvPhase, s, count,
                         p.max_tokens, 0, protocol::kCapacityRdmaMirror);
    ctx.state->abort = 1;
  }
  int before = count;  // inclusive scan over the expert's sources, then exclusive
  for (int offset = 1; offset < width; offset <<= 1) {
    const int other = __shfl_up_sync(0xffffffffu, before, offset, width);
    if (s >= offset) before += other;
  }
  int total = __shfl_sync(0xffffffffu, before, ctx.num_ranks - 1, width);
  before -= count;
  if (!valid) return;
  if (s < ctx.num_ranks) p.layout_range[e * ctx.num_ranks + s] = (static_cast<std::int64_t>(count) << 32) | before;
  if (total > slots) {
    if (s == 0) {
      device::record_error(ctx.error, protocol::ErrorCode::kCapacity, ctx.rank, kLlDispatchRecvPhase, -1, total, slots);
      ctx.state->abort = 1;
    }
    total = 0;
  }
  if (s == 0) {
    p.recv_count[e] = total;
    if (p.cumulative_recv_stats != nullptr) p.cumulative_recv_stats[e] = cumulative + total;
  }
}

// Words of a slot's FP8 scales: a column each of the receiver's [E_local][columns][slots]
// (fp32: one per 128 channels; UE8M0: four exponents packed per word).
__device__ __forceinline__ int ll_scale_columns(const LlDispatchRecvParams& p) {
  return p.ue8m0 ? (p.hidden / 128 + 3) / 4 : p.hidden / 128;
}

// Block 0.
template <bool kRdma>
__device__ __forceinline__ LlPlan make_plan(const LlDispatchRecvParams& p, std::uint64_t epoch) {
  const LlContext& ctx = p.ctx;
  const LlArrivals arrivals = ll_wait_peers<kRdma>(ctx, &protocol::LlHeader::ready, epoch, kLlDispatchRecvPhase, p.wait_stats);
  bool failed = arrivals.failed;
  if (!failed) failed = !ll_peers_share_shape<kRdma>(ctx, arrivals.arrived, kLlDispatchRecvPhase);
  const int num_local = p.num_experts / ctx.num_ranks;
  if (!failed) {
    const int width = ll_layout_width(ctx.num_ranks), experts_per_warp = 32 / width;
    for (int e0 = threadIdx.x / 32 * experts_per_warp; e0 < num_local; e0 += kLlWarps * experts_per_warp) {
      ll_experts_layout<kRdma>(p, arrivals.arrived, e0, width, threadIdx.x % 32);
    }
  }
  __shared__ bool plan_failed;
  __syncthreads();
  if (threadIdx.x == 0) {
    plan_failed = failed || ctx.state->abort != 0;  // abort: a slot overflow above, or the send phase
    if (plan_failed) ctx.state->abort = 1;
    __threadfence();
    // Pairs with the acquire in wait_for_plan (other blocks of this kernel).
    asm volatile("st.release.gpu.global.u64 [%0], %1;" ::"l"(&ctx.state->ll_plan_ready[ctx.parity]),
                 "l"(pack_plan(epoch, arrivals.arrived, plan_failed))
                 : "memory");
  }
  __syncthreads();
  return {arrivals.arrived, plan_failed};
}

// Other blocks: bounded wait for block 0's plan.
__device__ __forceinline__ LlPlan wait_for_plan(const LlContext& ctx, std::uint64_t epoch) {
  __shared__ LlPlan plan;
  if (threadIdx.x == 0) {
    const std::uint64_t start = device::global_timer_ns();
    std::uint64_t v = 0;
    for (;;) {
      asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(&ctx.state->ll_plan_ready[ctx.parity]) : "memory");
      if ((v >> 16) == (epoch & 0xffffffffffffull)) break;
      if (device::global_timer_ns() - start > 2 * ctx.timeout_ns) {
        device::record_error(ctx.error, protocol::ErrorCode::kTimeout, ctx.rank, kLlDispatchRecvPhase, ctx.rank,
                             static_cast<std::int64_t>(protocol::make_tag(epoch, ctx.op)),
                             static_cast<std::int64_t>(protocol::make_tag(v >> 16, ctx.op)),
                             static_cast<std::int64_t>(start), protocol::kPeerEntryUnknown);
        v = 1;  // failed
        break;
      }
    }
    plan = {static_cast<unsigned>((v >> 1) & 0x7fffu), (v & 1u) != 0};
  }
  __syncthreads();
  return plan;
}

// One warp: chunk `chunk` (kLlChunkBytes of the payload) of token t of source s into
// every local slot the token names; chunk 0 also carries the scales and src_info.
template <bool kRdma>
__device__ __forceinline__ void expand_chunk(const LlDispatchRecvParams& p, int s, int t, int chunk, const protocol::LlPublished& pub,
                             int* dest_rows, int lane) {
  const LlContext& ctx = p.ctx;
  const int num_local = p.num_experts / ctx.num_ranks;
  const int first_expert = ctx.rank * num_local;
  const int slots_per_expert = ctx.num_ranks * p.max_tokens;
  const std::uint8_t* half = ll_source_half<kRdma>(ctx, s);
  int row = -1;
  if (lane < p.num_topk) {
    const int i = t * p.num_topk + lane;
    const int e = reinterpret_cast<const std::int32_t*>(half + ctx.layout.topk_ids_offset)[i] - first_expert;
    if (e >= 0 && e < num_local) {
      const int begin = static_cast<int>(p.layout_range[e * ctx.num_ranks + s] & 0xffffffff);
      row = e * slots_per_expert + begin + reinterpret_cast<const std::int32_t*>(half + ctx.layout.ranks_offset)[i];
    }
  }
  const unsigned mask = __ballot_sync(0xffffffffu, row >= 0);
  if (mask == 0) return;
  if (row >= 0) dest_rows[__popc(mask & ((1u << lane) - 1))] = row;
  __syncwarp();
  const int num_dests = __popc(mask);

  // An RDMA source pushed its rows into our mirror slot at their own indices.
  const std::uint8_t* rows = ll_rdma_peer<kRdma>(ctx, s) ? half + ctx.layout.rows_offset : ll_rebase(ctx, s, pub, pub.rows);
  const std::uint8_t* src = rows + t * pub.row_stride;
  const std::int64_t payload_bytes = p.fp8 ? p.hidden : 2 * p.hidden;
  constexpr int kVectorsPerLane = kLlChunkBytes / 16 / 32;
  const int first_vector = chunk * (kLlChunkBytes / 16);
  const int num_vectors = static_cast<int>(payload_bytes / 16);
  int4 v[kVectorsPerLane];
#pragma unroll
  for (int u = 0; u < kVectorsPerLane; ++u) {
    const int i = first_vector + u * 32 + lane;
    if (i < num_vectors) v[u] = device::load_stream(reinterpret_cast<const int4*>(src) + i);
  }
  for (int d = 0; d < num_dests; ++d) {
    int4* dst = reinterpret_cast<int4*>(p.recv_x + static_cast<std::int64_t>(dest_rows[d]) * payload_bytes);
#pragma unroll
    for (int u = 0; u < kVectorsPerLane; ++u) {
      const int i = first_vector + u * 32 + lane;
      if (i < num_vectors) dst[i] = v[u];
    }
  }
  if (chunk == 0) {
    if (p.fp8) {
      const int num_scales = p.hidden / 128;
      const float* scales = reinterpret_cast<const float*>(src + p.hidden);
      const int columns = ll_scale_columns(p);
      for (int c = lane; c < columns; c += 32) {
        std::uint32_t value = 0;
        if (p.ue8m0) {
          for (int b = 0; b < 4 && 4 * c + b < num_scales; ++b) {
            value |= ((__float_as_uint(scales[4 * c + b]) >> 23) & 0xffu) << (8 * b);
          }
        } else {
          value = __float_as_uint(scales[c]);
        }
        for (int d = 0; d < num_dests; ++d) {
          const int e = dest_rows[d] / slots_per_expert;
          const int slot = dest_rows[d] % slots_per_expert;
          static_cast<std::uint32_t*>(p.recv_scales)[(static_cast<std::int64_t>(e) * columns + c) * slots_per_expert + slot] = value;
        }
      }
    }
    if (lane < num_dests) p.src_info[dest_rows[lane]] = t;
  }
  __syncwarp();
}

// Every block of the kernel: plan (block 0) or wait for the plan, expand, done barrier.
template <bool kRdma>
__device__ __forceinline__ void ll_dispatch_recv_phase(const LlDispatchRecvParams& p) {
  __shared__ int dest_rows_of_warps[kLlWarps][kMaxTopk];
  const LlContext& ctx = p.ctx;
  const std::uint64_t epoch = ll_op_epoch(ctx);
  const LlPlan plan = blockIdx.x == 0 ? make_plan<kRdma>(p, epoch) : wait_for_plan(ctx, epoch);
  if (!plan.failed) {
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int payload_bytes = p.fp8 ? p.hidden : 2 * p.hidden;
    const int chunks = (payload_bytes + kLlChunkBytes - 1) / kLlChunkBytes;
    // Only the tokens sources sent: their counts once per block, then (source, token,
    // chunk) items over the prefix.
    __shared__ int tokens_before[kMaxNvlRanks + 1];
    if (static_cast<int>(threadIdx.x) < ctx.num_ranks) {
      const int s = threadIdx.x;
      tokens_before[s + 1] = (plan.arrived & (1u << s)) ? ll_source_published<kRdma>(ctx, s).num_tokens : 0;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      tokens_before[0] = 0;
      for (int s = 0; s < ctx.num_ranks; ++s) tokens_before[s + 1] += tokens_before[s];
    }
    __syncthreads();
    const int num_items = tokens_before[ctx.num_ranks] * chunks;
    for (int item = blockIdx.x * kLlWarps + warp; item < num_items; item += gridDim.x * kLlWarps) {
      const int chunk = item % chunks;
      const int token = item / chunks;
      int s = 0;
      while (token >= tokens_before[s + 1]) ++s;
      const protocol::LlPublished& pub = ll_source_published<kRdma>(ctx, s);
      expand_chunk<kRdma>(p, s, token - tokens_before[s], chunk, pub, dest_rows_of_warps[warp], lane);
    }
  }
  ll_done_barrier<kRdma>(ctx, epoch, plan.failed, kLlDispatchRecvPhase);
}

}  // namespace moe_ep::kernels
