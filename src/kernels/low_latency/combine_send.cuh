// Low-latency combine, sending phase (the expert owner). Publishes this rank's layout
// (the dispatch's layout_range) in its half, so every home finds its rows, and the expert
// outputs: in place (peers in this process read x) or staged into the half (process
// groups; BF16 copy or LogFMT encoding). The last block signals every peer.
#pragma once
#include <cstdint>

#include "device/copy.cuh"
#include "device/read_once.cuh"
#include "kernels/low_latency/ll_collective.cuh"
#include "kernels/low_latency/logfmt.cuh"

namespace moe_ep::kernels {


// Whether a layout_range entry ((count << 32) | first row) holds row j.
__device__ __forceinline__ bool range_holds(std::int64_t range, int j) {
  const int begin = static_cast<int>(range & 0xffffffff);
  return j >= begin && j < begin + static_cast<int>(range >> 32);
}

// Row j of local expert e came from the home rank whose layout_range holds j; that home's
// rank (or -1 past the expert's count) and j's rank among the home's rows.
struct RowHome {
  int home;
  int rank_in_expert;
};
__device__ __forceinline__ RowHome home_of_row(const LlCombineSendParams& p, int e, int j) {
  const int num_ranks = p.ctx.num_ranks;
  for (int h = 0; h < num_ranks; ++h) {
    const std::int64_t range = p.layout_range[e * num_ranks + h];
    if (range_holds(range, j)) return {h, j - static_cast<int>(range & 0xffffffff)};
  }
  return {-1, -1};
}

// One warp: staged row (e, j) of the half into the mirror slot of its home, an RDMA peer,
// at (e * max_tokens + rank in expert).
__device__ __forceinline__ void push_expert_row(const LlCombineSendParams& p, int e, std::int64_t item, RowHome home,
                                                int lane) {
  const LlContext& ctx = p.ctx;
  const std::int64_t stride = ctx.shape.row_stride;
  const std::int64_t own = static_cast<std::int64_t>(ctx.parity) * ctx.half_bytes + ctx.layout.rows_offset + item * stride;
  const std::int64_t slot = ll_mirror_offset(ctx, home.home, ctx.rank) + ctx.layout.rows_offset +
                            (static_cast<std::int64_t>(e) * p.max_tokens + home.rank_in_expert) * stride;
  __syncwarp();  // the staged row is visible to the whole warp
  ll_transport(ctx).put_warp(home.home, slot, own, stride, lane);
}

// Rows of local expert e that homes sent: the end of its last home's range.
__device__ __forceinline__ int expert_row_count(const LlCombineSendParams& p, int e) {
  const std::int64_t last = p.layout_range[e * p.ctx.num_ranks + p.ctx.num_ranks - 1];
  return static_cast<int>((last & 0xffffffff) + (last >> 32));
}

// Rows x holds in place, of the experts with at most kLlPrefetchRows (thread i of n: experts
// i, i + n, ...): their L2 fill starts while `ready` goes out, so the homes that pull them
// after it find them in L2 rather than in DRAM (x is cold when no expert kernel just wrote
// it). Larger experts are not prefetched: their rows would crowd L2 out.
inline constexpr int kLlPrefetchRows = 8;
__device__ __forceinline__ void prefetch_few_rows(const LlCombineSendParams& p, int i, int n) {
  const int num_local = p.ctx.shape.num_experts / p.ctx.num_ranks;
  const std::int64_t row_bytes = 2ll * p.hidden;
  // A failed dispatch may leave any count in layout_range: only counts within the slots.
  const int most = min(kLlPrefetchRows, p.ctx.num_ranks * p.max_tokens);
  for (int e = i; e < num_local; e += n) {
    const int rows = expert_row_count(p, e);
    if (rows <= 0 || rows > most) continue;
    const std::int64_t first = static_cast<std::int64_t>(e) * p.ctx.num_ranks * p.max_tokens;
    device::prefetch_l2(p.x + first * p.hidden, static_cast<std::uint32_t>(rows * row_bytes));
  }
}

// Valid rows of x into the half: row (e, j) keeps its index, BF16 or LogFMT (unless the
// half already holds them: zero_copy); rows of RDMA homes are then pushed to them. With
// skip_own_rows the rows whose home is this rank stay in x, where its receive reads them
// (2 processes on 2 H100s: half the rows). Warps
// take rows in the order (j, e), row j of every expert before any row j + 1, up to the
// longest expert's count: the valid rows, each expert's first, spread over every warp.
// (In (e, j) order over every slot, the valid rows fell to the warps whose slot index was
// below the experts' counts: 2 processes on 2 H100s, ll-v3, 32 warps of 1,024 staged
// every row.)
template <bool kRdma>
__device__ __forceinline__ void stage_expert_rows(const LlCombineSendParams& p, std::uint8_t* half, bool copy,
                                                  unsigned rdma) {
  const LlContext& ctx = p.ctx;
  const int num_local = ctx.shape.num_experts / ctx.num_ranks;
  const int slots_per_expert = ctx.num_ranks * p.max_tokens;
  const int lane = threadIdx.x % 32;
  int longest = 0;
  for (int e = lane; e < num_local; e += 32) longest = max(longest, expert_row_count(p, e));
#pragma unroll
  for (int offset = 16; offset >= 1; offset >>= 1) longest = max(longest, __shfl_xor_sync(0xffffffffu, longest, offset));
  longest = min(longest, slots_per_expert);
  std::uint8_t* rows = half + ctx.layout.rows_offset;
  const std::int64_t num_rows = static_cast<std::int64_t>(num_local) * longest;
  for (std::int64_t k = blockIdx.x * kLlWarps + threadIdx.x / 32; k < num_rows; k += gridDim.x * kLlWarps) {
    const int e = static_cast<int>(k % num_local);
    const int j = static_cast<int>(k / num_local);
    if (j >= expert_row_count(p, e)) continue;  // past the expert's count
    if (p.skip_own_rows && range_holds(p.layout_range[e * ctx.num_ranks + ctx.rank], j)) continue;
    const std::int64_t item = static_cast<std::int64_t>(e) * slots_per_expert + j;
    const std::uint16_t* src = p.x + item * p.hidden;
    std::uint8_t* dst = rows + item * ctx.shape.row_stride;
    if (!copy) {
    } else if (p.logfmt) {
      warp_encode_row_logfmt(src, dst, p.hidden, lane);
    } else {
      device::warp_copy_row(reinterpret_cast<int4*>(dst), reinterpret_cast<const int4*>(src), p.hidden * 2 / 16, lane);
    }
    if constexpr (kRdma) {
      const RowHome home = home_of_row(p, e, j);
      // Past max_tokens per (expert, home) the dispatch already failed (kCapacityRdmaMirror).
      if (home.home >= 0 && (rdma & (1u << home.home)) && home.rank_in_expert < p.max_tokens) {
        push_expert_row(p, e, item, home, lane);
      }
    }
  }
}

// Block 0, after writing the plan: the plan into every RDMA home's mirror slot.
__device__ __forceinline__ void push_plan(const LlCombineSendParams& p, unsigned rdma) {
  const LlContext& ctx = p.ctx;
  const std::int64_t own = static_cast<std::int64_t>(ctx.parity) * ctx.half_bytes + ctx.layout.plan_offset;
  const int warp = threadIdx.x / 32;
  for (int q = warp; q < ctx.num_ranks; q += kLlWarps) {
    if (!(rdma & (1u << q))) continue;
    ll_transport(ctx).put_warp(q, ll_mirror_offset(ctx, q, ctx.rank) + ctx.layout.plan_offset, own,
                               8ll * ctx.shape.num_experts, threadIdx.x % 32);
  }
}

// Every block of the kernel; the last one to finish signals `ready` to every peer.
// kRdma: some peers are reached by RDMA. kInPlace: peers read x in place (no staging, no
// LogFMT, no RDMA peer), so none of the staging code is in the kernel.
template <bool kRdma, bool kInPlace = false>
__device__ __forceinline__ void ll_combine_send_phase(const LlCombineSendParams& p) {
  static_assert(!(kRdma && kInPlace), "rows in place have no RDMA peer");
  const LlContext& ctx = p.ctx;
  const std::uint64_t epoch = ll_op_epoch(ctx);
  std::uint8_t* half = ll_half(ctx, ctx.rank);
  const unsigned rdma = kRdma ? ll_rdma_peers(ctx) : 0u;
  const bool copy = !kInPlace && (p.stage_rows || p.logfmt);
  const bool in_place = !copy && rdma == 0;  // block 0's plan is the whole send phase
  if (blockIdx.x == 0) {
    // The plan: each home's rows per expert, unless the homes' slots are absolute.
    const int entries = p.absolute_slots ? 0 : ctx.shape.num_experts;  // E_local * num_ranks
    std::int64_t* plan = reinterpret_cast<std::int64_t*>(half + ctx.layout.plan_offset);
    const int i0 = threadIdx.x;
    const std::int64_t first = i0 < entries ? p.layout_range[i0] : 0;
    if (in_place && i0 == blockDim.x - 1) ll_write_published(ctx);  // while the plan loads
    if (i0 < entries) plan[i0] = first;
    for (int i = i0 + blockDim.x; i < entries; i += blockDim.x) plan[i] = p.layout_range[i];
    if (kRdma && rdma != 0) {
      __syncthreads();
      push_plan(p, rdma);
    }
  }
  if (!in_place) {
    stage_expert_rows<kRdma>(p, half, copy, rdma);
    ll_finish_send<kRdma>(ctx, epoch);
  } else if (blockIdx.x == 0) {
    // Peers read x in place: block 0's plan is the whole send phase, no ticket needed.
    __syncthreads();
    if (threadIdx.x < 32) {
      ll_publish_ready<kRdma>(ctx, epoch, /*written=*/true);
    } else {
      prefetch_few_rows(p, static_cast<int>(threadIdx.x) - 32, static_cast<int>(blockDim.x) - 32);
    }
  }
}

}  // namespace moe_ep::kernels
