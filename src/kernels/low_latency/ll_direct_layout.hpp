// How a direct dispatch (dispatch_direct.cuh) spreads its tokens over its blocks and its
// receive layout over its warps: plain arithmetic, shared by the kernel and the host (the
// grid, the dynamic shared memory) and checked by CPU tests.
#pragma once
#include <cstdint>

#include "kernels/low_latency/ll_params.hpp"

namespace moe_ep::kernels {

constexpr int ll_min(int a, int b) { return a < b ? a : b; }
constexpr int ll_max(int a, int b) { return a > b ? a : b; }

// The most blocks that share one token's entries (at most top-k).
inline constexpr int kLlDirectMaxParts = 8;

// How many blocks share each token's entries, each writing the token to a part of them,
// in a grid of at most `share` blocks beside the blocks that lay out the local experts (a
// warp each): with few tokens, an SM writing a token into its 8 slots at 8 receivers waits
// on each destination's first store in turn (H100, one token: 1.4 us for 8, 0.15 us for
// one), so its entries go out from several SMs at once. 1: a block writes all of them.
constexpr int ll_direct_parts(int num_tokens, int num_topk, int local_experts, int share) {
  if (num_tokens <= 0) return 1;
  const int parts = ll_min(ll_min((share - ll_direct_layout_blocks(local_experts)) / num_tokens, num_topk), kLlDirectMaxParts);
  return parts >= 2 ? parts : 1;
}

// Block `block`'s tokens [first, last) of a grid of num_blocks. With parts > 1 the last
// num_tokens * parts blocks hold a token each (block `part` of its token writes the entries
// k with k % parts == part) and the blocks before them none; otherwise each block holds a
// balanced run of at most ceil(num_tokens / blocks) tokens and writes all of their entries.
// holding_before: the blocks before this one that hold a token (at most one token a block).
struct LlDirectShare {
  int first, last;
  int part, parts;
  int holding_before;
};
constexpr LlDirectShare ll_direct_share(int num_tokens, int parts, int num_blocks, int block) {
  if (parts > 1) {
    const int first_holding = num_blocks - num_tokens * parts;
    if (block < first_holding) return {num_tokens, num_tokens, 0, parts, 0};
    const int h = block - first_holding;
    return {h / parts, h / parts + 1, h % parts, parts, h};
  }
  const auto bound = [&](int b) { return static_cast<int>(static_cast<std::int64_t>(b) * num_tokens / num_blocks); };
  return {bound(block), bound(block + 1), 0, 1, bound(block)};
}
// Whether a block holding a token writes its entry k (its top-k slot).
constexpr bool ll_direct_writes_entry(const LlDirectShare& s, int k) { return k % s.parts == s.part; }
// Tokens a block holds at most (the entries it ranks: the dynamic shared memory).
constexpr int ll_direct_block_tokens(int num_tokens, int parts, int num_blocks) {
  return parts > 1 ? 1 : (num_tokens + num_blocks - 1) / num_blocks;
}

// The order in which warps take local experts to lay out: a permutation of the grid's
// warps (the warp of rank r lays out experts r, r + the grid's warps, ...). With at most
// one token a block, every warp with no item comes first (block by block), so the layout
// of a call with few tokens does not wait behind its items, then the warps with items,
// each block's last first, spread over the blocks. With more tokens than blocks every
// block's last warp comes first (it has the fewest items), then the one before it, and so
// on.
constexpr int ll_direct_layout_rank(int num_tokens, int hidden, int num_blocks, const LlDirectShare& s, int block,
                                    int warp) {
  if (num_tokens > num_blocks) return (kLlWarps - 1 - warp) * num_blocks + block;
  const int busy = ll_min(ll_direct_chunks(hidden), kLlWarps);  // a holding block's busy warps
  const int holding = num_tokens * s.parts;                       // blocks that hold a token
  const int busy_here = s.last > s.first ? busy : 0;
  if (warp >= busy_here) return block * kLlWarps - s.holding_before * busy + warp - busy_here;
  return num_blocks * kLlWarps - holding * busy + (busy - 1 - warp) * holding + s.holding_before;
}

// The local experts that block `block`'s warps lay out, as a list: how long it is, and its
// k-th entry (-1: none). With more tokens than blocks, those of e % blocks == block in
// order; otherwise warp k % kLlWarps's (k / kLlWarps)-th.
constexpr int ll_direct_laid_out_count(int num_local, int num_tokens, int num_blocks, int block) {
  if (num_tokens > num_blocks) return ll_max(0, (num_local - block + num_blocks - 1) / num_blocks);
  const int warps = num_blocks * kLlWarps;
  return kLlWarps * ((num_local + warps - 1) / warps);
}
constexpr int ll_direct_laid_out_expert(int num_local, int num_tokens, int hidden, int num_blocks,
                                        const LlDirectShare& s, int block, int k) {
  const int e = num_tokens > num_blocks
                    ? block + k * num_blocks
                    : ll_direct_layout_rank(num_tokens, hidden, num_blocks, s, block, k % kLlWarps) +
                          k / kLlWarps * num_blocks * kLlWarps;
  return e < num_local ? e : -1;
}

}  // namespace moe_ep::kernels
