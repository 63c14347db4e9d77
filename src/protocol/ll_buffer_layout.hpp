// Layout of the low-latency region (the buffer's num_rdma_bytes, peer-mapped). Two halves
// ("parities") alternate between calls, so a dispatch's result and the next combine's
// staging never share memory. ONE carve function gives both sizes and offsets; the size
// hint is the carve of the largest call. Per half:
//   [LlHeader][ready counts: uint64 num_experts][expert counts: int32 num_experts]
//   [plan: int64 num_experts]
//   [topk ids: int32 T*topk][ranks: int32 T*topk]
//   [rows: the dispatch's token rows (T of them), or the combine's staged expert outputs
//    (num_experts * T rows) for process groups, zero_copy and LogFMT]
#pragma once
#include <cstdint>
#include <type_traits>

#include "moe_ep/config.hpp"
#include "protocol/nvl_buffer_layout.hpp"

namespace moe_ep::protocol {

// Row formats a rank publishes; the receiver checks every peer used the same one.
enum class LlFormat : std::int32_t { kBf16 = 1, kFp8 = 2, kFp8PowerOfTwo = 3, kLogFmt = 4, kFp8Ue8m0 = 5 };

// What a rank publishes for the current low-latency op of one half; peers read it after
// the ready flag. Pointers are in the owner's address space (rebased like SourceDescriptor).
struct LlPublished {
  const std::uint8_t* owner_base;
  const std::uint8_t* rows;   // dispatch: [num_tokens] token rows; combine: [E_local * N] expert rows
  std::int64_t row_stride;    // bytes between rows
  std::int32_t num_tokens;    // dispatch: the sender's tokens
  std::int32_t format;        // LlFormat
  // The call's shape, which every rank must share.
  std::int32_t hidden;
  std::int32_t num_topk;
  std::int32_t num_experts;
  std::int32_t max_tokens;
  std::int32_t direct;        // 1: dispatch direct / combine of its handle (every rank must agree)
  std::int32_t done_blocks;   // blocks of the launch that signals `done` (LlContext::block_done)
  // Direct dispatch (every rank in this process on this GPU): the receiver's outputs,
  // which senders write into (recv_x [E_local, N, hidden], its scales, src_info).
  std::uint8_t* recv_x;
  void* recv_scales;
  std::int32_t* src_info;
};
static_assert(std::is_trivially_copyable_v<LlPublished>);

// Per-block `done` flags (LlContext::block_done): a rank's block b signals slot b of its
// own header (LlHeader::done_blocks); every rank on one GPU, so the blocks of all ranks
// together are at most its SMs.
inline constexpr int kLlDoneSlots = 256;

// A direct dispatch's `ready` as tagged words (every rank in this process on this GPU): each
// word holds a 32-bit value and, above it, the op's epoch (31 bits) and a failed bit, so a
// reader polls the very words it needs and no flag is awaited first
// (kernels/low_latency/ready_words.cuh). The shape, then the outputs (in the header); the
// counts follow the header (LlHalfLayout::ready_counts_offset), two sets by epoch parity.
// Every reset zeroes both (ll_reset_bytes): an older op's word never carries a later op's tag.
enum LlReadyWord : int {
  kReadyHidden = 0,
  kReadyTopk,
  kReadyExperts,
  kReadyMaxTokens,
  kReadyFormat,
  kReadyDirect,
  kReadyNumTokens,
  kReadyDoneBlocks,
  kReadyPointers,  // recv_x, recv_scales, src_info: each its low half, then its high half
  kLlReadyWords = kReadyPointers + 6,
};
inline constexpr int kLlReadyStride = 16;  // words reserved per rank's record
static_assert(kLlReadyWords <= kLlReadyStride);

struct alignas(128) LlHeader {
  // Flags (tags). Slot s: peer s's, stored here by s; every rank on one GPU (block_done),
  // slot s of s's own header instead, where its peers read it (one store per signal).
  std::uint64_t ready[kMaxNvlRanks];  // peer s: its rows, counts and metadata are published
  std::uint64_t pad0[16 - kMaxNvlRanks];
  std::uint64_t done[kMaxNvlRanks];   // peer r: finished reading my published rows, or (direct
                                      // dispatch) writing its tokens into my outputs
  std::uint64_t pad1[16 - kMaxNvlRanks];
  LlPublished published;
  // The owner's latest LL kernel on this half: its op tag and global-timer start (ns). A
  // peer whose wait expires names whether this rank's kernel had started.
  std::uint64_t entered;
  std::uint64_t entered_ns;
  std::uint64_t done_blocks[kLlDoneSlots];  // block_done: this rank's block b's `done` (tag), read by every peer
  std::uint64_t ready_words[kLlReadyStride];  // tagged LlReadyWord values (direct dispatch)
};
static_assert(std::is_trivially_copyable_v<LlHeader>);

// Bytes of one FP8 row in the dispatch rows: e4m3 payload, then hidden/128 fp32 scales.
constexpr std::int64_t ll_fp8_row_bytes(std::int64_t hidden) { return align_up(hidden + 4 * (hidden / 128), 16); }
// Bytes of one LogFMT row: 8 bytes per 128 channels (two floats), then one code per value.
constexpr std::int64_t ll_logfmt_row_bytes(std::int64_t hidden) { return align_up(8 * (hidden / 128) + hidden, 16); }

struct LlHalfLayout {
  std::int64_t ready_counts_offset = 0;   // uint64[2][num_experts]: a direct dispatch's tagged counts,
                                          // by the epoch's parity (a peer may publish the half's
                                          // next op while this rank still lays out from them)
  std::int64_t expert_counts_offset = 0;  // int32[num_experts]: the sender's tokens per global expert
  std::int64_t plan_offset = 0;           // int64[num_experts]: combine: the owner's layout_range
                                          // [E_local][num_ranks], so homes find their rows
  std::int64_t topk_ids_offset = 0;       // int32[max_tokens * num_topk]
  std::int64_t ranks_offset = 0;          // int32[max_tokens * num_topk]: slot among this sender's rows
                                          // for that expert (order of (token, k))
  std::int64_t rows_offset = 0;
  std::int64_t rows_bytes = 0;
  std::int64_t total_bytes = 0;           // of one half
};

// One half for calls of up to max_tokens tokens of `hidden` bf16 channels. With
// combine_staging, room for every expert output row (num_experts * max_tokens of 2*hidden).
constexpr LlHalfLayout carve_ll_half(std::int64_t max_tokens, std::int64_t hidden, std::int64_t num_topk,
                                     std::int64_t num_experts, bool combine_staging) {
  LlHalfLayout l;
  l.ready_counts_offset = align_up(sizeof(LlHeader), 128);  // the same for every call (see ll_reset_bytes)
  l.expert_counts_offset = align_up(l.ready_counts_offset + 16 * num_experts, 128);
  l.plan_offset = align_up(l.expert_counts_offset + 4 * num_experts, 128);
  l.topk_ids_offset = align_up(l.plan_offset + 8 * num_experts, 128);
  l.ranks_offset = align_up(l.topk_ids_offset + 4 * max_tokens * num_topk, 128);
  l.rows_offset = align_up(l.ranks_offset + 4 * max_tokens * num_topk, 128);
  const std::int64_t dispatch_rows = max_tokens * 2 * hidden;  // bf16 >= fp8 + scales
  const std::int64_t combine_rows = combine_staging ? num_experts * max_tokens * 2 * hidden : 0;
  l.rows_bytes = dispatch_rows > combine_rows ? dispatch_rows : combine_rows;
  l.total_bytes = align_up(l.rows_offset + l.rows_bytes, 128);
  return l;
}

// Bytes at the start of a half of half_bytes that a reset zeroes: the header and the
// ready counts of any call that fits.
constexpr std::int64_t ll_reset_bytes(std::int64_t half_bytes) {
  const std::int64_t most = align_up(sizeof(LlHeader), 128) + 16 * kMaxExperts;
  return half_bytes < most ? half_bytes : most;
}

// Mirror slots of a half, for peers reached by RDMA (other nodes): such a peer cannot be
// read in place, so it pushes into a slot of ours what an NVLink peer would let us read:
//   dispatch: its published shape (header), expert counts, top-k ids and ranks at the
//             half's own offsets, and the rows of the tokens we receive at their indices;
//   combine:  its layout_range (plan) at plan_offset, and the expert rows of our tokens at
//             rows_offset + (local expert * max_tokens + rank in expert) * row stride.
// One slot per other rank (slot of source s at a receiver r: s - (s > r)), after the half's
// own part.
struct LlMirrorLayout {
  std::int64_t offset = 0;  // from the half's start
  std::int64_t stride = 0;  // bytes of one slot
  std::int64_t count = 0;
  constexpr std::int64_t end() const { return offset + count * stride; }
};

constexpr LlMirrorLayout carve_ll_mirrors(const LlHalfLayout& own, std::int64_t max_tokens, std::int64_t hidden,
                                          std::int64_t num_experts, std::int64_t num_ranks, bool mirrored) {
  LlMirrorLayout m;
  m.offset = own.total_bytes;  // end() is the half's end, slots or not
  if (!mirrored || num_ranks <= 1) return m;
  const std::int64_t dispatch_rows = max_tokens * 2 * hidden;
  const std::int64_t combine_rows = (num_experts / num_ranks) * max_tokens * 2 * hidden;
  m.stride = align_up(own.rows_offset + (dispatch_rows > combine_rows ? dispatch_rows : combine_rows), 128);
  m.count = num_ranks - 1;
  return m;
}

// Bytes of the whole region (two halves) for the largest call; top-k sized at its maximum.
constexpr std::int64_t ll_region_bytes(std::int64_t max_tokens, std::int64_t hidden, std::int64_t num_experts,
                                       bool combine_staging) {
  return 2 * carve_ll_half(max_tokens, hidden, kMaxTopk, num_experts, combine_staging).total_bytes;
}

// The same with mirror slots for num_ranks ranks (some reached by RDMA).
constexpr std::int64_t ll_mirrored_region_bytes(std::int64_t max_tokens, std::int64_t hidden, std::int64_t num_experts,
                                                std::int64_t num_ranks, bool combine_staging) {
  const LlHalfLayout own = carve_ll_half(max_tokens, hidden, kMaxTopk, num_experts, combine_staging);
  return 2 * carve_ll_mirrors(own, max_tokens, hidden, num_experts, num_ranks, true).end();
}

}  // namespace moe_ep::protocol
