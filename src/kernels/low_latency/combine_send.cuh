// Low-latency combine, sending phase (the expert owner). Publishes this rank's layout
// (the dispatch's layout_range) in its half, so every home finds its rows, and the expert
// outputs: in place (peers in this process read x) or staged into the half (process
// groups; BF16 copy or LogFMT encoding). The last block signals every peer.
#pragma once
#include <cstdint>

#include "device/copy.cuh"
#include "kernels/low_latency/ll_collective.cuh"
#include "kernels/low_latency/logfmt.cuh"

namespace moe_ep::kernels {


// Valid rows of x into the half: row (e, j) keeps its index, BF16 or LogFMT.
__device__ __forceinline__ void stage_expert_rows(const LlCombineSendParams& p, std::uint8_t* half) {
  const LlContext& ctx = p.ctx;
  const int num_local = ctx.shape.num_experts / ctx.num_ranks;
  const int slots_per_expert = ctx.num_ranks * p.max_tokens;
  const int lane = threadIdx.x % 32;
  std::uint8_t* rows = half + ctx.layout.rows_offset;
  const std::int64_t num_items = static_cast<std::int64_t>(num_local) * slots_per_expert;
  for (std::int64_t item = blockIdx.x * kLlWarps + threadIdx.x / 32; item < num_items; item += gridDim.x * kLlWarps) {
    const int e = static_cast<int>(item / slots_per_expert);
    const int j = static_cast<int>(item % slots_per_expert);
    const std::int64_t last = p.layout_range[e * ctx.num_ranks + ctx.num_ranks - 1];
    if (j >= (last & 0xffffffff) + (last >> 32)) continue;  // past the expert's count
    const std::uint16_t* src = p.x + item * p.hidden;
    std::uint8_t* dst = rows + item * ctx.shape.row_stride;
    if (p.logfmt) {
      warp_encode_row_logfmt(src, dst, p.hidden, lane);
    } else {
      device::warp_copy_row(reinterpret_cast<int4*>(dst), reinterpret_cast<const int4*>(src), p.hidden * 2 / 16, lane);
    }
  }
}

// Every block of the kernel; the last one to finish signals `ready` to every peer.
__device__ __forceinline__ void ll_combine_send_phase(const LlCombineSendParams& p) {
  const LlContext& ctx = p.ctx;
  const std::uint64_t epoch = ll_op_epoch(ctx);
  std::uint8_t* half = ll_half(ctx, ctx.rank);
  if (blockIdx.x == 0) {
    const int entries = ctx.shape.num_experts;  // E_local * num_ranks
    std::int64_t* plan = reinterpret_cast<std::int64_t*>(half + ctx.layout.plan_offset);
    for (int i = threadIdx.x; i < entries; i += blockDim.x) plan[i] = p.layout_range[i];
  }
  if (p.stage_rows || p.logfmt) stage_expert_rows(p, half);

  ll_finish_send(ctx, epoch);
}

}  // namespace moe_ep::kernels
