// Layout of each rank's peer-mapped (NVLink-domain) buffer. ONE carve function computes
// both the size and the offsets; tested on the CPU.
//   [NvlHeader][per-expert send counts: kMaxExperts int32][send lists: kMaxNvlRanks x max_tokens int32]
//   [staging: the rest] -- process groups copy what peers must read (peers cannot address
//   the caller's tensors in another process) into staging first.
#pragma once
#include <cstdint>
#include <type_traits>

#include "moe_ep/config.hpp"

namespace moe_ep::protocol {

// What a rank publishes for the current operation; peers read it after the ready flag.
// Pointers are in the owner's address space; a reader adds (its mapping of the owner's
// buffer - owner_base), which is 0 in one process and maps staged data across processes.
struct SourceDescriptor {
  const std::uint8_t* owner_base;
  const std::uint8_t* x;         // dispatch: [num_tokens, row_bytes]; combine: [num_recv, row_bytes]
  std::int64_t x_row_stride;     // bytes
  const float* x_scales;         // dispatch fp8: scales, strides in elements
  std::int64_t scale_token_stride;
  std::int64_t scale_hidden_stride;
  const std::int64_t* topk_idx;  // [num_tokens, num_topk] contiguous
  const float* topk_weights;     // dispatch: [num_tokens, num_topk]; combine: [num_recv, num_topk]
  std::int32_t num_tokens;
  // The call's shape, which every rank must share (compared after the ready barrier).
  std::int32_t row_bytes;
  std::int32_t num_topk;
  std::int32_t num_experts;
  std::int32_t num_scales;
};
static_assert(std::is_trivially_copyable_v<SourceDescriptor>);

// Where a receiving rank wants its dispatched rows written (its output tensors, or for
// process groups their staged copies in its NVL buffer); senders push into them after the
// sink_ready barrier. Pointers are in the owner's address space, rebased like sources.
struct SinkDescriptor {
  std::uint8_t* owner_base;
  std::uint8_t* recv_x;          // [num_rows, row_bytes]
  float* recv_x_scales;          // [num_rows, num_scales] or null
  std::int64_t* recv_topk_idx;   // [num_rows, num_topk] or null
  float* recv_topk_weights;      // [num_rows, num_topk] or null
  int* recv_src_idx;             // [num_rows] or null (cached dispatch keeps the handle's)
  std::int32_t num_rows;         // capacity
  std::int32_t reserved;
};
static_assert(std::is_trivially_copyable_v<SinkDescriptor>);

enum class FlagSet { kReady, kSinkReady, kDone };

struct alignas(128) NvlHeader {
  std::uint64_t ready[kMaxNvlRanks];       // written by peer s when it has published its source (tag)
  std::uint64_t pad0[16 - kMaxNvlRanks];
  std::uint64_t sink_ready[kMaxNvlRanks];  // written by peer s when it has published its sink (tag)
  std::uint64_t pad1[16 - kMaxNvlRanks];
  std::uint64_t done[kMaxNvlRanks];        // written by peer r when it finished this op's accesses to me (tag)
  std::uint64_t pad2[16 - kMaxNvlRanks];
  SourceDescriptor source;
  SinkDescriptor sink;
  std::int32_t num_tokens_per_rank[kMaxNvlRanks];  // this rank's sends per destination
};
static_assert(std::is_trivially_copyable_v<NvlHeader>);

// Tokens one rank may send per dispatch at most, however large the buffer (beyond the
// send lists, bytes go to staging).
inline constexpr std::int64_t kMaxTokensPerRank = 65536;

struct NvlBufferLayout {
  std::int64_t max_tokens = 0;           // tokens one rank may send per dispatch
  std::int64_t expert_counts_offset = 0; // int32[kMaxExperts]
  std::int64_t send_lists_offset = 0;    // int32[kMaxNvlRanks][max_tokens]
  std::int64_t staging_offset = 0;       // process groups: copies of what peers read
  std::int64_t staging_bytes = 0;
  std::int64_t total_bytes = 0;
};

constexpr std::int64_t align_up(std::int64_t v, std::int64_t a) { return (v + a - 1) / a * a; }

// Offsets for a buffer holding `max_tokens` send slots per destination and
// `staging_bytes` of staging.
constexpr NvlBufferLayout carve_nvl_buffer(std::int64_t max_tokens, std::int64_t staging_bytes = 0) {
  NvlBufferLayout l;
  l.max_tokens = max_tokens;
  l.expert_counts_offset = align_up(sizeof(NvlHeader), 128);
  l.send_lists_offset = align_up(l.expert_counts_offset + 4 * kMaxExperts, 128);
  l.staging_offset = align_up(l.send_lists_offset + 4 * kMaxNvlRanks * max_tokens, 128);
  l.staging_bytes = staging_bytes / 128 * 128;
  l.total_bytes = l.staging_offset + l.staging_bytes;
  return l;
}

// The carve of a buffer of `bytes`: as many send slots as fit (up to kMaxTokensPerRank),
// the rest staging. All zero when not even the header fits.
constexpr NvlBufferLayout carve_nvl_buffer_for_bytes(std::int64_t bytes) {
  const std::int64_t fixed = carve_nvl_buffer(0).total_bytes;
  if (bytes < fixed) return NvlBufferLayout{};
  std::int64_t max_tokens = (bytes - fixed) / (4 * kMaxNvlRanks);
  max_tokens = max_tokens / 32 * 32;  // keeps the staging 128-byte aligned
  if (max_tokens > kMaxTokensPerRank) max_tokens = kMaxTokensPerRank;
  return carve_nvl_buffer(max_tokens, bytes - carve_nvl_buffer(max_tokens).total_bytes);
}

}  // namespace moe_ep::protocol
