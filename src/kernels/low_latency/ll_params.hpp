// Parameters of the low-latency kernels, built on the host and passed by value. Every
// rank's LL region (the buffer's num_rdma_bytes) is reached through `peer_bases`; a call
// uses one half of it (`parity`), laid out by protocol::carve_ll_half.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "moe_ep/config.hpp"
#include "protocol/device_state.hpp"
#include "protocol/error_record.hpp"
#include "protocol/ll_buffer_layout.hpp"

namespace moe_ep::kernels {

// Threads of every LL kernel, and the row chunk one warp moves per work item: rows are
// split so a call spreads over all the SMs it may use (a warp alone is latency-bound).
inline constexpr int kLlThreads = 256;
inline constexpr int kLlWarps = kLlThreads / 32;
inline constexpr int kLlChunkBytes = 2048;  // of a stored row (fp8 or bf16 payload)
inline constexpr int kLlStageChunkChannels = 1024;  // of a token a warp casts or stages
// Blocks of one LL kernel spin on each other (ticket, plan) and on peers: all must be
// resident. Two blocks per SM of register room, and a grid of at most the rank's share
// of the SMs less a reserve, leave room for whatever else runs on the device.
inline constexpr int kLlMinBlocksPerSm = 2;
inline constexpr int kLlReservedSms = 4;
// Channels of a token one warp moves per work item of the direct dispatch.
inline constexpr int kLlDirectChunkChannels = 1024;
// A token's chunks of kLlDirectChunkChannels (its work items in a direct dispatch).
constexpr int ll_direct_chunks(int hidden) { return (hidden + kLlDirectChunkChannels - 1) / kLlDirectChunkChannels; }
// Blocks whose warps lay out a direct dispatch's local experts, one warp each.
constexpr int ll_direct_layout_blocks(int local_experts) { return (local_experts + kLlWarps - 1) / kLlWarps; }
// Channels of a token one block sums per combine item: two int4 columns per thread, so
// each thread keeps 2 x 8 rows of loads in flight.
inline constexpr int kLlCombineColumns = 2;
inline constexpr int kLlCombineItemChannels = kLlThreads * 8 * kLlCombineColumns;
// A combine's item size (LlCombineRecvParams::item_channels): half an item when even the
// halves fit `blocks` (one block each).
inline int ll_combine_item_channels(std::int64_t num_tokens, std::int64_t hidden, std::int64_t blocks) {
  constexpr int kHalf = kLlCombineItemChannels / 2;
  return num_tokens * ((hidden + kHalf - 1) / kHalf) <= blocks ? kHalf : kLlCombineItemChannels;
}

struct LlContext {
  std::array<std::uint8_t*, kMaxNvlRanks> peer_bases;  // LL region of every rank (own included)
  std::int64_t half_bytes;
  protocol::LlHalfLayout layout;  // of this call's shape
  protocol::LlMirrorLayout mirrors;  // slots RDMA peers push into (count 0: no RDMA peer)
  // Peers on another node (rank / ranks_per_node differs), or every peer with all_rdma
  // (deep_ep's allow_nvlink_for_low_latency_mode=False), are reached through the RDMA
  // transport: they push into our mirror slots, we push into theirs; nothing of theirs is
  // read in place.
  int ranks_per_node;
  bool all_rdma;
  int parity;                     // which half this op uses
  int rank;
  int num_ranks;
  protocol::Op op;
  bool enable_shrink;             // an expired wait masks the peer instead of failing
  // Dispatch only: every rank is in this process on this GPU (no shrink). Senders write
  // their tokens straight into the receivers' output slots: on one device there is no
  // link to cross, and this moves each byte once (see dispatch_direct.cuh).
  bool direct_dispatch;
  bool gpu_scope;                 // every peer is on this GPU: GPU-scope flags and fences
  // Every peer is on this GPU, without shrink: each block signals its own `done` (slot of
  // LlHeader::done_blocks) and one block waits for every peer's blocks (shape.done_blocks),
  // so no last-block ticket sits between a block's writes and the signal.
  bool block_done;
  // The same condition, for every op of the buffer (block_done is set only for the calls
  // that signal per block): flags live in the signaller's own header (ll_own_flags), so
  // ranks on different paths still find each other's.
  bool own_flags;
  std::uint64_t timeout_ns;
  std::uint64_t delay_ns;         // fault injection: sleep before signalling
  protocol::DeviceState* state;   // this rank's
  protocol::ErrorRecord* error;   // host-mapped
  std::uint64_t* trace;           // phase timestamps (ll_trace.hpp), or null
  // The call's shape, published and compared with every peer's.
  protocol::LlPublished shape;
};
static_assert(std::is_trivially_copyable_v<LlContext>);

// Dispatch, sending half: rank the (token, slot) entries per expert, cast (FP8) or stage
// the rows once into this rank's half, publish, signal every peer.
struct LlDispatchSendParams {
  LlContext ctx;
  const std::uint16_t* x;         // [num_tokens, hidden] bf16
  std::int64_t x_row_stride;      // elements
  int num_tokens;
  int hidden;
  const void* topk_idx;           // [num_tokens, num_topk]
  bool topk_idx_int32;            // else int64
  int num_topk;
  int num_experts;
  bool stage_rows;                // write rows into the half (FP8 always; BF16 for process groups)
  bool round_scale;
  int* combine_slots;             // out [num_tokens, num_topk]: the entry's rank per expert (direct: its slot)
  int direct_parts;               // direct: blocks sharing a token's entries (ll_direct_parts), else 1
};
static_assert(std::is_trivially_copyable_v<LlDispatchSendParams>);

// Dispatch, receiving half: plan the per-expert layout from every source's counts, pull
// each token once and expand it into its experts' slots, then the done barrier.
struct LlDispatchRecvParams {
  LlContext ctx;
  int hidden;
  int num_topk;
  int num_experts;
  int max_tokens;                 // T; slots per expert N = num_ranks * T
  bool fp8;
  bool ue8m0;
  std::uint8_t* recv_x;           // [E_local, N, hidden] fp8 or bf16
  void* recv_scales;              // fp32 [E_local, S, N] or int32 [E_local, S/4, N] (column-major)
  int* recv_count;                // [E_local]
  int* src_info;                  // [E_local, N]
  std::int64_t* layout_range;     // [E_local, num_ranks]
  int* cumulative_recv_stats;     // [E_local] or null
  std::int64_t* wait_stats;       // [num_ranks] or null
};
static_assert(std::is_trivially_copyable_v<LlDispatchRecvParams>);

// Combine, sending half (expert owner): publish the expert outputs (staged or
// log-encoded into the half when peers cannot read x in place) and this rank's layout.
struct LlCombineSendParams {
  LlContext ctx;
  const std::uint16_t* x;          // [E_local, N, hidden] bf16
  int hidden;
  int max_tokens;
  bool stage_rows;                 // copy valid rows of x into the half (bf16)
  bool skip_own_rows;              // stage_rows: not this rank's own rows (its receive reads x)
  bool logfmt;                     // encode valid rows into the half
  const std::int64_t* layout_range;  // [E_local, num_ranks] (the dispatch handle's)
  bool absolute_slots;             // the handle's: homes need no plan (LowLatencyHandle)
};
static_assert(std::is_trivially_copyable_v<LlCombineSendParams>);

// Combine, receiving half (home): weighted sum of each token's rows pulled from owners.
struct LlCombineRecvParams {
  LlContext ctx;
  int num_tokens;
  int hidden;
  int num_topk;
  int num_experts;
  int max_tokens;
  const void* topk_idx;            // [num_tokens, num_topk]
  bool topk_idx_int32;
  const float* topk_weights;       // [num_tokens, num_topk]
  const int* combine_slots;        // [num_tokens, num_topk] (the dispatch handle's)
  bool absolute_slots;             // combine_slots hold the owners' slots (LowLatencyHandle)
  const std::int64_t* layout_range;  // [E_local, num_ranks] (the dispatch handle's): this rank's own rows
  // This rank's rows are where they were before the launch (x in place, or zero copy, or
  // staged for peers only): they are read from own_rows without waiting for this rank's own
  // `ready`.
  bool own_rows_ready;
  const std::uint8_t* own_rows;    // x (the half's rows with zero_copy), the published row stride
  std::uint16_t* out;              // [num_tokens, hidden] bf16
  std::int64_t* wait_stats;        // [num_ranks] or null
  // Channels of a work item: kLlCombineItemChannels, or half of it for calls with so few
  // tokens that their items leave blocks idle (each thread then sums one column).
  int item_channels;
};
static_assert(std::is_trivially_copyable_v<LlCombineRecvParams>);

// Blocks a direct dispatch wants (dispatch_direct.cuh): one per token (its warps split the
// token's chunks), or, if more, one per kLlWarps local experts (a warp lays out each) plus
// those the tokens' chunks keep busy, so no expert waits for a warp's items; with tokens
// whose entries several blocks share (p.direct_parts), one per local kLlWarps experts and
// one per part of a token.
inline int ll_direct_dispatch_blocks(const LlDispatchSendParams& p, const LlDispatchRecvParams& r) {
  const int layout_blocks = ll_direct_layout_blocks(r.num_experts / r.ctx.num_ranks);
  if (p.direct_parts > 1) return layout_blocks + p.num_tokens * p.direct_parts;
  const int busy_blocks = (p.num_tokens * ll_direct_chunks(p.hidden) + kLlWarps - 1) / kLlWarps;
  return std::max({1, p.num_tokens, layout_blocks + busy_blocks});
}

// Which phases one launch runs: a call with a receive hook launches kSend, its hook
// kRecv; a call without launches kBoth (one kernel), or kAlone: both, for a rank alone
// (a direct dispatch, or a combine whose rows are in place; no RDMA peer), whose kernel
// holds no peer's code.
enum class LlPhases { kSend, kRecv, kBoth, kAlone };
void launch_ll_dispatch(const LlDispatchSendParams& send, const LlDispatchRecvParams& recv, LlPhases phases,
                        int num_blocks, cudaStream_t stream);
void launch_ll_combine(const LlCombineSendParams& send, const LlCombineRecvParams& recv, LlPhases phases,
                       int num_blocks, cudaStream_t stream);
// Masks: set/clear one rank, clear all, or copy them out ([num_ranks] int32); tiny kernels
// so they order on the caller's stream and are capturable.
void launch_ll_mask_update(protocol::DeviceState* state, int rank, int value, cudaStream_t stream);
void launch_ll_mask_clear(protocol::DeviceState* state, cudaStream_t stream);
void launch_ll_mask_query(const protocol::DeviceState* state, int num_ranks, int* out, cudaStream_t stream);

// See preload_* in intranode_params.hpp: the constructor loads every kernel up front.
void preload_low_latency_kernels();

}  // namespace moe_ep::kernels
