// FP8 scales of the direct dispatch (dispatch_direct.cuh), staged in the receiver's half.
// The receiver's scales are column-major ([E_local][columns][slots]), so written in place a
// slot's words are 4-byte stores to as many lines, next to the other senders' words for
// the neighbouring slots: on the H100, 8 of the 34 us of the write phase of ll-v3 at 8 ranks
// (measured by leaving them out). A staging sender instead writes a token's words as one
// row into the half of each receiver the token goes to (once per receiver), at
// [source][token]; after `done`, every receiver block lays out the scales of the experts it
// laid out, consecutive slots per store. A few tokens' words, or fewer ranks' (ll-v3:
// neutral at 4 ranks, 2% slower at 2), do not pay for the extra step.
// The rows lie in the receiver's own half (its rows region, unused by a direct dispatch):
// senders write there only after the receiver's `ready` of this op, and nothing rewrites
// them before the receiver's next op on this half.
#pragma once
#include <cstdint>

#include "kernels/low_latency/dispatch_recv.cuh"
#include "kernels/low_latency/ll_collective.cuh"
#include "kernels/low_latency/ll_params.hpp"

namespace moe_ep::kernels {

inline constexpr int kLlStagedScalesMinTokens = 32;
inline constexpr int kLlStagedScalesMinRanks = 8;
// Scale columns one warp lays out per work item; a staged row is padded to a multiple of it
// (16-byte loads).
inline constexpr int kLlScaleColumnsPerItem = 16;

// Words of a staged row: the fp32 columns (the most of either scale format), padded.
__host__ __device__ constexpr int ll_staged_row_words(int hidden) {
  return (hidden / 128 + kLlScaleColumnsPerItem - 1) / kLlScaleColumnsPerItem * kLlScaleColumnsPerItem;
}
// Whether a sender of num_tokens tokens stages its scales. Every rank decides it from
// shape fields the ranks share and the sender's published token count. The rows of every
// source must fit the rows region (max_tokens * 2 * hidden bytes).
__host__ __device__ constexpr bool ll_stages_scales(bool fp8, int num_ranks, int hidden, int num_tokens) {
  return fp8 && num_ranks >= kLlStagedScalesMinRanks && num_tokens >= kLlStagedScalesMinTokens &&
         num_ranks * ll_staged_row_words(hidden) * 4 <= 2 * hidden;
}

// Source s's staged scale row of its token t, in receiver `holder`'s half.
__device__ __forceinline__ std::uint32_t* ll_staged_scale_row(const LlDispatchRecvParams& r, int holder, int s, int t) {
  return reinterpret_cast<std::uint32_t*>(ll_half(r.ctx, holder) + r.ctx.layout.rows_offset) +
         (static_cast<std::int64_t>(s) * r.max_tokens + t) * ll_staged_row_words(r.hidden);
}

// Whole block: *mask (shared) gets bit q set for every source q in `sources` that stages
// its scales (`tokens`: source q's token count, in thread q), readable after the block's next
// barrier.
__device__ __forceinline__ void scale_staging_sources(const LlDispatchRecvParams& r, unsigned sources, int tokens,
                                                      unsigned* mask) {
  if (threadIdx.x >= 32) return;
  const int q = threadIdx.x;
  const bool stages = q < r.ctx.num_ranks && (sources & (1u << q)) && ll_stages_scales(r.fp8, r.ctx.num_ranks, r.hidden, tokens);
  const unsigned bits = __ballot_sync(0xffffffffu, stages);
  if (q == 0) *mask = bits;
}

// One warp's work item: columns [c0, c0 + kLlScaleColumnsPerItem) of local expert e's
// slots; lane q holds source q's slot range, `total` the expert's slots. Its layout is
// loaded before the wait for `done` (this block laid e out).
struct StagedScalesItem {
  int e, c0, first, count, total;
};

// A block's items: the local experts its warps laid out (`experts` of them, listed by the
// caller: the layout order is the caller's), each in column groups.
__device__ __forceinline__ int staged_scales_groups(const LlDispatchRecvParams& r) {
  return (ll_scale_columns(r) + kLlScaleColumnsPerItem - 1) / kLlScaleColumnsPerItem;
}
__device__ __forceinline__ int staged_scales_items(const LlDispatchRecvParams& r, int experts) {
  return experts * staged_scales_groups(r);
}
// Column group `group` of local expert e (-1: an empty item), which this block laid out.
__device__ __forceinline__ StagedScalesItem staged_scales_item(const LlDispatchRecvParams& r, int e, int group,
                                                               int lane) {
  const LlContext& ctx = r.ctx;
  StagedScalesItem it{e, group * kLlScaleColumnsPerItem, 0, 0, 0};
  if (e < 0) return it;
  const std::int64_t range = lane < ctx.num_ranks ? r.layout_range[e * ctx.num_ranks + lane] : 0;
  it.first = static_cast<int>(range & 0xffffffff);
  it.count = static_cast<int>(range >> 32);
  it.total = r.recv_count[e];
  return it;
}

// One warp, once every peer's tokens and scale rows are out (every `done`): the item's
// scales from the staging sources' rows in this rank's half (`stagers`, bit per source)
// into the column-major scales, lane j of a store holding consecutive slot j. The rows
// load from L2 (other ranks' kernels wrote them), 16 bytes at a time.
__device__ __forceinline__ void transpose_staged_scales(const LlDispatchRecvParams& r, unsigned stagers,
                                                        const StagedScalesItem& it, int lane) {
  const LlContext& ctx = r.ctx;
  if (it.e < 0) return;
  const int slots = ctx.num_ranks * r.max_tokens, columns = ll_scale_columns(r);
  std::uint32_t* out =
      static_cast<std::uint32_t*>(r.recv_scales) + (static_cast<std::int64_t>(it.e) * columns + it.c0) * slots;
  for (int j0 = 0; j0 < it.total; j0 += 32) {
    const int j = j0 + lane;
    // Slot j's source: the one whose range holds it.
    int source = -1;
    for (int q = 0; q < ctx.num_ranks; ++q) {
      const int q_first = __shfl_sync(0xffffffffu, it.first, q), q_count = __shfl_sync(0xffffffffu, it.count, q);
      if (j >= q_first && j < q_first + q_count) source = q;
    }
    if (j >= it.total || source < 0 || !(stagers & (1u << source))) continue;
    const int4* row = reinterpret_cast<const int4*>(
        ll_staged_scale_row(r, ctx.rank, source, r.src_info[static_cast<std::int64_t>(it.e) * slots + j]) + it.c0);
    int4 words[kLlScaleColumnsPerItem / 4];
#pragma unroll
    for (int v = 0; v < kLlScaleColumnsPerItem / 4; ++v) words[v] = __ldcg(row + v);
    const std::uint32_t* word = reinterpret_cast<const std::uint32_t*>(words);
#pragma unroll
    for (int c = 0; c < kLlScaleColumnsPerItem; ++c) {
      if (it.c0 + c < columns) out[static_cast<std::int64_t>(c) * slots + j] = word[c];
    }
  }
}

}  // namespace moe_ep::kernels
