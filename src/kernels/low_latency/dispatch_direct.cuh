// Low-latency dispatch when every rank is in this process on this GPU (ctx.direct_dispatch),
// in one launch: senders write each token straight into its slots in the receivers'
// outputs. On one device no link is crossed, and each byte moves once: the token is read
// once, cast once (with few tokens, once per block sharing it), and written once per
// selected expert (a staged copy would be written and read again).
//   1. block b owns a run of tokens (with few tokens, each of the grid's last blocks one
//      token and a part of its entries, so that the token's stores leave from several
//      SMs: ll_direct_share); it reads every top-k id, counts the entries before its run
//      and from it on per expert (so every block holds this rank's count per
//      expert; with peers, block 0 publishes its shape and outputs while the ids load and
//      the counts right then, as tagged words: its `ready`, ready_words.cuh), and ranks its
//      own entries after the ones before (an entry's rank among this rank's entries for its
//      expert), so no block waits for another to rank;
//   2. each warp loads its first chunk of a token meanwhile; once every peer's words and
//      the counts of the ranks before this one are in (they place its first slot per
//      expert; the receivers' outputs are known), it casts its chunks and writes them into
//      every slot the token names (FP8 scales of a large sender at 8+ ranks: as a row into
//      each receiver's half instead, staged_scales.cuh); then a warp per local expert lays out
//      the receive side (counts, layout_range);
//   3. with peers, each block signals its own `done` (my tokens are in your outputs) once
//      its warps with items are through, before its layout, and block 0 waits for every
//      block of every peer (ll_wait_block_done); when a source staged its scales, so does
//      every block with experts to lay them out for, which it then does. A rank alone ends
//      with the kernel (see ll_mark_entered).
// The slots are those the pulling receive picks (source rank, then token order), so
// combine and the handle are unchanged. Not with a receive hook (a send phase alone must
// not wait for peers) nor with shrink (every rank must agree on which sources take part;
// with shrink each receiver decides that alone): those pull (dispatch_recv.cuh).
#pragma once
#include <cstdint>

#include "kernels/low_latency/ready_words.cuh"
#include "kernels/low_latency/dispatch_recv.cuh"
#include "kernels/low_latency/dispatch_send.cuh"
#include "kernels/low_latency/fp8_cast.cuh"
#include "kernels/low_latency/ll_direct_layout.hpp"
#include "kernels/low_latency/staged_scales.cuh"

namespace moe_ep::kernels {

// A receiver's outputs, from its published header.
struct DirectOutputs {
  std::uint8_t* recv_x;
  void* recv_scales;
  std::int32_t* src_info;
};

// Whole block, over every entry: before[e] = the entries before `first` naming expert e,
// after[e] those from `first` on; own[i - first] = the expert of entry i in [first, last)
// (-1: none or a bad id). Block 0 records bad ids (the op fails) and returns whether it
// found any. issued() runs once the first ids are requested (its loads queue behind them).
template <typename Issued>
__device__ __forceinline__ bool load_block_entries(const LlDispatchSendParams& p, int first, int last, int* before,
                                                   int* after, int* own, Issued issued) {
  __shared__ bool bad_ids;
  const LlContext& ctx = p.ctx;
  const int num_entries = p.num_tokens * p.num_topk;
  constexpr int kBatch = 8;  // loads in flight per thread before any shared-memory update
  std::int64_t batch[kBatch];
  const auto load_batch = [&](int i0) {
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = i0 + b * blockDim.x;
      batch[b] = i < num_entries ? load_expert(p, i) : -1;
    }
  };
  // The first batch is in flight while the counters are cleared.
  load_batch(threadIdx.x);
  issued();
  for (int e = threadIdx.x; e < p.num_experts; e += blockDim.x) before[e] = after[e] = 0;
  if (threadIdx.x == 0) bad_ids = false;
  __syncthreads();
  for (int i0 = threadIdx.x; i0 < num_entries; i0 += kBatch * blockDim.x) {
    if (i0 != static_cast<int>(threadIdx.x)) load_batch(i0);
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = i0 + b * blockDim.x;
      if (i >= num_entries) break;
      std::int64_t e = batch[b];
      if (e < -1 || e >= p.num_experts) {
        if (blockIdx.x == 0) {
          device::record_error(ctx.error, protocol::ErrorCode::kBadExpertId, ctx.rank,
                               protocol::Phase::kLowLatencyDispatchSend, -1, i / p.num_topk, i % p.num_topk, e,
                               p.num_experts);
          ctx.state->abort = 1;
          bad_ids = true;
        }
        e = -1;
      }
      if (i >= first && i < last) own[i - first] = static_cast<int>(e);
      if (e >= 0) atomicAdd(&(i < first ? before : after)[e], 1);
    }
  }
  __syncthreads();
  return bad_ids;
}

// Whole block, after load_block_entries: after[e] becomes this rank's count per expert
// (before + after); `before` is left as the walk's base (rank_block_entries).
__device__ __forceinline__ void total_counts(const LlDispatchSendParams& p, const int* before, int* after) {
  for (int e = threadIdx.x; e < p.num_experts; e += blockDim.x) after[e] += before[e];
  __syncthreads();
}

// Whole block: ranks the block's entries after the counts before them (warp 0 walks them
// in order); own[i] becomes (expert << 16) | rank. Alone (`slots`: an expert's, else 0),
// own[i] becomes the entry's destination right away, and the rank is its slot (no rank
// comes before this one): the handle's combine slot (with peers, place_block_entries).
__device__ __forceinline__ void rank_block_entries(const LlDispatchSendParams& p, int first, int count, int* before,
                                                   int* own, int slots) {
  if (threadIdx.x < 32) {
    walk_entries(own, 0, count, before, threadIdx.x, [&](int i, int rank) {
      if (slots > 0) {
        p.combine_slots[first + i] = rank;
        own[i] = rank >= 0 && rank < slots ? own[i] * slots + rank : -1;
      } else {
        own[i] = rank >= 0 ? (own[i] << 16) | rank : -1;
      }
    });
  }
  __syncthreads();
}

// Whole block, with every peer's ready record: own[i] becomes the entry's destination,
// (owner << 28) | row there (e_local * N + slot), or -1. The slot is the entries the
// ranks before this one send to the expert (they come first in its layout: their tagged
// counts, all of an entry's in flight at once) plus the rank; it is the handle's combine
// slot of entry first + i (absolute_slots). Only once the peers' records arrived and their
// shapes agree (else `failed_before`, block-uniform, and nothing is placed: a peer of fewer
// experts never writes some counts). Returns whether the op failed. (Loading the thread's
// first counts with the ready words instead, so they often arrive stale and are awaited
// one by one: one token per rank at 8 ranks, dispatch 10.75 -> 12.15 us.)
__device__ __forceinline__ bool place_block_entries(const LlDispatchSendParams& p, const LlDispatchRecvParams& r,
                                                    std::uint64_t epoch, int first_entry, int count, int* own,
                                                    bool failed_before) {
  if (failed_before) return true;
  __shared__ bool failed;
  if (threadIdx.x == 0) failed = false;
  __syncthreads();
  const LlContext& ctx = p.ctx;
  const int num_local = p.num_experts / ctx.num_ranks;
  const int slots = ctx.num_ranks * r.max_tokens;
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int entry = own[i];
    const int e = entry >> 16, owner = e / num_local;
    std::uint64_t seen[kMaxNvlRanks];
#pragma unroll
    for (int s = 0; s < kMaxNvlRanks; ++s) {
      seen[s] = entry >= 0 && s < ctx.rank ? device::load_relaxed(ll_count_word(ctx, s, e, epoch), true) : 0;
    }
    int first = 0;
    bool ok = true;
    unsigned stale = 0;  // sources whose count is not in yet: awaited one by one (one copy of the wait)
    const std::uint32_t tag = ll_word_tag(epoch);
#pragma unroll
    for (int s = 0; s < kMaxNvlRanks; ++s) {
      if (entry < 0 || s >= ctx.rank) continue;
      if (ll_word_ready(seen[s], tag)) {
        first += static_cast<int>(static_cast<std::uint32_t>(seen[s]));
      } else {
        stale |= 1u << s;
      }
    }
    // After a failed wait (this thread's, or another's before this entry), no other: a
    // bound or two, not one per count.
    if (stale != 0 && *static_cast<volatile bool*>(&failed)) ok = false;
    for (; stale != 0 && ok; stale &= stale - 1) {
      const int s = __ffs(stale) - 1;
      const LlWordRead read = ll_await_word(ctx, s, ll_count_word(ctx, s, e, epoch), epoch, kLlDirectPhase);
      first += static_cast<int>(read.value);
      ok = read.ok;
    }
    ok = ok && stale == 0;
    if (!ok) failed = true;
    const int slot = first + (entry & 0xffff);
    // A slot past the expert's last: the receiver reports the overflow (kCapacity).
    const bool placed = ok && entry >= 0 && slot < slots;
    own[i] = placed ? (owner << 28) | ((e - owner * num_local) * slots + slot) : -1;
    p.combine_slots[first_entry + i] = placed ? slot : -1;
  }
  __syncthreads();
  return failed;
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

// One warp: the scale word lane j stores for a chunk of `num_groups` groups (`group_scale`:
// group g's scale in lane g): fp32, group j's; packed UE8M0, groups 4j .. 4j + 3 (a chunk
// starts on a multiple of four groups). Lanes past the chunk's words hold garbage.
__device__ __forceinline__ std::uint32_t chunk_scale_word(bool ue8m0, int num_groups, float group_scale, int lane) {
  if (!ue8m0) return __float_as_uint(group_scale);
  const std::uint32_t exponent = (__float_as_uint(group_scale) >> 23) & 0xffu;
  std::uint32_t packed = 0;
#pragma unroll
  for (int b = 0; b < 4; ++b) {
    const std::uint32_t part = __shfl_sync(0xffffffffu, exponent, (4 * lane + b) & 31);
    if (4 * lane + b < num_groups) packed |= part << (8 * b);
  }
  return packed;
}

// A warp's work item: channels [begin, end) of token t, the block's item `item` (the
// block's tokens' chunks in order).
struct DirectItem {
  int t, begin, end;
};
__device__ __forceinline__ DirectItem direct_item(const LlDispatchSendParams& p, const LlDirectShare& tokens, int item) {
  const int chunks = ll_direct_chunks(p.hidden);
  const int begin = (item % chunks) * kLlDirectChunkChannels;
  return {tokens.first + item / chunks, begin, min(begin + kLlDirectChunkChannels, p.hidden)};
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
// into every slot the token's entries name (`destination`: in lane k, entry k's, from
// place_block_entries, or -1). Lane k finds entry k's row and scale column at its
// receiver, then the warp stores into every entry's: the entries' stores are independent
// (a warp's item is a short chain; few warps share an SM). kAlone: no scales are staged (a
// sender stages only with peers).
template <bool kAlone>
__device__ __forceinline__ void write_direct_chunk(const LlDispatchSendParams& p, const LlDispatchRecvParams& r,
                                                   const DirectOutputs* outputs, const DirectItem& it,
                                                   const DirectRow& v, int destination, int lane) {
  const int begin = it.begin, end = it.end;
  const bool bf16 = !r.fp8;
  const int slots = p.ctx.num_ranks * r.max_tokens;
  const int num_groups = (end - begin) / 128;
  // Scale words per slot of a chunk, and their columns ([E_local, columns, N] at the receiver).
  const int words = r.ue8m0 ? (num_groups + 3) / 4 : num_groups;
  const int columns = ll_scale_columns(r);
  const bool stage_scales = !kAlone && ll_stages_scales(r.fp8, p.ctx.num_ranks, p.hidden, p.num_tokens);
  std::uint8_t* row_at = nullptr;
  std::uint32_t* scales_at = nullptr;  // staged: the token's row at the receiver, for one entry per receiver
  // A receiver's first entry of the token (staged scales go to each receiver once).
  const int owner = destination >= 0 ? destination >> 28 : -1;
  const bool first_at_owner = stage_scales && (__match_any_sync(0xffffffffu, owner) & ((1u << lane) - 1)) == 0;
  if (destination >= 0) {
    const DirectOutputs& out = outputs[destination >> 28];
    const int row = destination & ((1 << 28) - 1);
    row_at = out.recv_x + static_cast<std::int64_t>(row) * (bf16 ? 2 * p.hidden : p.hidden);
    const int e = row / slots, slot = row - e * slots;
    const int column = r.ue8m0 ? begin / 512 : begin / 128;
    if (!stage_scales) {
      scales_at = static_cast<std::uint32_t*>(out.recv_scales) + (static_cast<std::int64_t>(e) * columns + column) * slots + slot;
    } else if (first_at_owner) {
      scales_at = ll_staged_scale_row(r, owner, p.ctx.rank, it.t) + column;
    }
    if (begin == 0) out.src_info[row] = it.t;
  }
  if (__ballot_sync(0xffffffffu, destination >= 0) == 0) return;

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
  const std::uint32_t word = bf16 ? 0u : chunk_scale_word(r.ue8m0, num_groups, gather_group_scales(scale_inv, lane), lane);
  const std::int64_t scale_stride = stage_scales ? 1 : slots;  // staged: a row; in place: a column
#pragma unroll
  for (int k = 0; k < kMaxTopk; ++k) {
    if (k >= p.num_topk) break;
    std::uint8_t* dst = reinterpret_cast<std::uint8_t*>(
        __shfl_sync(0xffffffffu, reinterpret_cast<unsigned long long>(row_at), k));
    std::uint32_t* scales = reinterpret_cast<std::uint32_t*>(
        __shfl_sync(0xffffffffu, reinterpret_cast<unsigned long long>(scales_at), k));
    if (dst == nullptr) continue;
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
    if (!bf16 && scales != nullptr && lane < words) scales[lane * scale_stride] = word;
  }
}

// One warp, after its items: its share of the receive side of this rank, local experts
// (each laid out by one warp: counts, layout_range; this rank's counts are the
// block's), in the order of ll_direct_layout_rank (`tokens`: the block's).
__device__ __forceinline__ void direct_layout(const LlDispatchSendParams& p, const LlDispatchRecvParams& r,
                                              const LlDirectShare& tokens, unsigned arrived, const int* own_counts,
                                              std::uint64_t epoch, int warp, int lane) {
  const int num_local = r.num_experts / r.ctx.num_ranks;
  const int rank = ll_direct_layout_rank(p.num_tokens, p.hidden, gridDim.x, tokens, blockIdx.x, warp);
  for (int e = rank; e < num_local; e += gridDim.x * kLlWarps) {
    ll_experts_layout<false>(r, arrived, e, /*width=*/32, lane, own_counts, epoch);
  }
}

// The whole op in one launch (every block): ranks the block's entries and counts every
// entry; block 0 publishes the counts (with peers); waits for every peer's ready words, writes
// its tokens into the receivers, lays out its share of the receive side; with peers, each
// block signals its `done` to every peer and block 0 waits for theirs. Needs
// ll_dispatch_send_shared_bytes of dynamic shared memory.
// kAlone: this rank is alone (LlPhases::kAlone; else it has peers): none of the peers'
// code is in the kernel.
template <bool kAlone>
__device__ __forceinline__ void ll_direct_dispatch(const LlDispatchSendParams& p, const LlDispatchRecvParams& r) {
  extern __shared__ int shared[];
  __shared__ DirectOutputs outputs[kMaxNvlRanks];
  const LlContext& ctx = p.ctx;
  const std::uint64_t epoch = kAlone ? 0 : ll_op_epoch(ctx);  // alone: moved on at entry, never read
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const LlDirectShare tokens = ll_direct_share(p.num_tokens, p.direct_parts, gridDim.x, blockIdx.x);
  const int num_items = (tokens.last - tokens.first) * ll_direct_chunks(p.hidden);
  const int num_entries = (tokens.last - tokens.first) * p.num_topk;
  int* before = shared;                    // [num_experts]
  int* counts = shared + p.num_experts;    // [num_experts]: from the block's first entry on, then this rank's counts
  int* own = shared + 2 * p.num_experts;   // [the block's entries]
  // This warp's first row loads while the block ranks and the peers get ready. With peers
  // it is requested after the ids, which the `ready` they wait for needs first; alone,
  // before them (the row is then what the kernel waits for).
  DirectRow row;
  const auto load_first_row = [&] {
    if (warp < num_items) load_direct_row(p, direct_item(p, tokens, warp), lane, row);
  };
  __shared__ bool aborted_before;  // block 0: this rank's op failed before it published (ready's failed bit)
  if (kAlone) load_first_row();
  const bool bad_ids = load_block_entries(p, tokens.first * p.num_topk, tokens.last * p.num_topk, before, counts, own, [&] {
    if (!kAlone) load_first_row();
    // With peers, block 0's last warp (it holds no id for a few tokens) publishes the shape
    // and outputs while the ids load: as tagged words for direct peers, and as the struct
    // a peer on another path reads after the late flag (ready_words.cuh).
    if (!kAlone && blockIdx.x == 0 && warp == kLlWarps - 1) {
      ll_write_ready_words(ctx, epoch, lane);
      if (lane == 31) {
        ll_write_published(ctx);
        aborted_before = ctx.state->abort != 0;
      }
    }
  });
  if (kAlone && threadIdx.x == 0) outputs[0] = {r.recv_x, r.recv_scales, r.src_info};
  total_counts(p, before, counts);
  // With peers, the counts go out before the block ranks its own entries.
  const bool publish_failed = !kAlone && blockIdx.x == 0 && (bad_ids || aborted_before);
  if (!kAlone && blockIdx.x == 0) {
    ll_write_ready_counts(ctx, counts, p.num_experts, epoch, publish_failed);
    if (threadIdx.x == 0) ll_stamp(ctx, kTraceReadySignalled);
  }
  rank_block_entries(p, tokens.first * p.num_topk, num_entries, before, own, kAlone ? r.max_tokens : 0);
  // With peers: every peer's ready record (this rank's own counts are the block's).
  LlArrivals arrivals{1u, false};
  __shared__ unsigned scale_stagers;  // sources that staged their scales: every block lays them out at the end
  __shared__ int peer_blocks[kMaxNvlRanks];  // the blocks that signal each peer's `done`
  if (!kAlone) {
    __shared__ std::uint32_t ready_words[kMaxNvlRanks][protocol::kLlReadyStride];
    arrivals = ll_await_ready_words(ctx, epoch, kLlDirectPhase, ready_words);
    if (blockIdx.x == 0 && threadIdx.x == 0) ll_stamp(ctx, kTraceReadySeen);
    // Thread q: receiver q's shape, outputs, blocks and tokens (ours from the call).
    const int q = threadIdx.x;
    int source_tokens = 0;
    if (q < ctx.num_ranks) {
      const bool theirs = q != ctx.rank;
      outputs[q] = theirs ? DirectOutputs{ll_ready_pointer<std::uint8_t>(ready_words, q, 0),
                                          ll_ready_pointer<void>(ready_words, q, 1),
                                          ll_ready_pointer<std::int32_t>(ready_words, q, 2)}
                          : DirectOutputs{r.recv_x, r.recv_scales, r.src_info};
      peer_blocks[q] = theirs ? static_cast<int>(ready_words[q][protocol::kReadyDoneBlocks]) : ctx.shape.done_blocks;
      source_tokens = theirs ? static_cast<int>(ready_words[q][protocol::kReadyNumTokens]) : ctx.shape.num_tokens;
    }
    // The shapes agree before anything is placed or written.
    arrivals.failed = !ll_check_peer_shape(ctx, ll_ready_shape(ctx, ready_words), kLlDirectPhase) || arrivals.failed;
    arrivals.failed = place_block_entries(p, r, epoch, tokens.first * p.num_topk, num_entries, own, arrivals.failed);
    scale_staging_sources(r, arrivals.failed ? 0u : arrivals.arrived, source_tokens, &scale_stagers);
  } else if (blockIdx.x == 0 && threadIdx.x == 0) {
    ll_stamp(ctx, kTraceReadySeen);  // alone: ranked
  }
  if (!arrivals.failed) {
    if (blockIdx.x == 0 && threadIdx.x == 0) ll_stamp(ctx, kTraceSlotsLoaded);
    // Warps 0 .. item_warps - 1 hold items.
    for (int item = warp; item < num_items; item += kLlWarps) {
      const DirectItem it = direct_item(p, tokens, item);
      // The next item's row loads while this one is written (its latency is not paid apart).
      const bool has_next = item + kLlWarps < num_items;
      DirectRow next;
      if (has_next) load_direct_row(p, direct_item(p, tokens, item + kLlWarps), lane, next);
      const int k = (it.t - tokens.first) * p.num_topk + lane;
      const bool mine = lane < p.num_topk && ll_direct_writes_entry(tokens, lane);
      write_direct_chunk<kAlone>(p, r, outputs, it, row, mine ? own[k] : -1, lane);
      if (has_next) memcpy(&row, &next, sizeof(row));
    }
  }
  // With peers: once the warps with items have written them, this block's `done` to every
  // peer (failed: the receiver reports it; block 0's bad ids fail the op too). The layout
  // writes only this rank's outputs, which the kernel's end completes: it runs meanwhile.
  if (!kAlone) {
    const int item_warps = min(num_items, kLlWarps);
    if (arrivals.failed && threadIdx.x == 0) ctx.state->abort = 1;
    if (warp < item_warps) device::sync_first_warps(item_warps);
    if (threadIdx.x == 0) ll_signal_block_done(ctx, epoch, arrivals.failed || bad_ids, /*wrote_peers=*/true);
  }
  if (!arrivals.failed) {
    direct_layout(p, r, tokens, arrivals.arrived, counts, kAlone ? 0 : epoch, warp, lane);
    if (blockIdx.x == 0 && threadIdx.x == 0) ll_stamp(ctx, kTraceLaidOut);
  }
  if (threadIdx.x == 0) ll_stamp(ctx, kTraceItemsDone, true);
  if constexpr (kAlone) return;  // failures are recorded where they happen; the kernel's end completes the op
  // Block 0 waits for every block of every peer (their tokens in our outputs), which
  // completes the op. When a source staged its scales, every block with experts to lay
  // them out for waits too, and then does.
  const bool waiter = blockIdx.x == 0;
  // Staged scales: column groups of the experts this block laid out (another block's
  // layout is not known to be written: its `done` comes before it).
  const int num_local = r.num_experts / ctx.num_ranks;
  const int warp_items =
      scale_stagers != 0
          ? staged_scales_items(r, ll_direct_laid_out_count(num_local, p.num_tokens, gridDim.x, blockIdx.x))
          : 0;
  if (!waiter && warp_items == 0) return;
  __syncthreads();  // the block's layout (staged_scales_item reads it)
  const int groups = warp_items > 0 ? staged_scales_groups(r) : 1;
  const auto staged_item = [&](int i) {
    const int e = ll_direct_laid_out_expert(num_local, p.num_tokens, p.hidden, gridDim.x, tokens, blockIdx.x, i / groups);
    return staged_scales_item(r, e, i % groups, lane);
  };
  // A warp's first item of staged scales: its layout loads while the block waits.
  StagedScalesItem item{};
  if (warp < warp_items) item = staged_item(warp);
  // The late `ready` flag, for peers on another path or op (ready_words.cuh).
  if (waiter && threadIdx.x == 0) ll_signal_ready_flags(ctx, epoch, publish_failed);
  const LlArrivals written = ll_wait_block_done(ctx, epoch, kLlDirectPhase, peer_blocks, waiter ? r.wait_stats : nullptr);
  if (!written.failed) {
    for (int i = warp; i < warp_items; i += kLlWarps) {
      if (i != warp) item = staged_item(i);
      transpose_staged_scales(r, scale_stagers, item, lane);
    }
  }
  // Whichever block's wait failed fails the op.
  if (written.failed && threadIdx.x == 0) ctx.state->abort = 1;
  if (waiter && threadIdx.x == 0) {
    ll_stamp(ctx, kTraceDoneSeen);
    ctx.state->ll_epoch[ctx.parity] = epoch;  // always move on (see ll_done_barrier)
  }
}

}  // namespace moe_ep::kernels
