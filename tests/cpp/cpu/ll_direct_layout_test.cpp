// How a direct low-latency dispatch spreads tokens over blocks and its receive layout over
// warps (kernels/low_latency/ll_direct_layout.hpp): every entry of every token is written
// by one block exactly once, a block ranks no more tokens than its shared memory holds,
// the layout order is a permutation of the grid's warps that gives experts to warps with
// no item first, and each block's list of laid-out experts (its staged scales) is exactly
// the experts its warps lay out.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "kernels/low_latency/ll_direct_layout.hpp"

namespace moe_ep::kernels {
namespace {

constexpr int kHiddens[] = {128, 2048, 7168, 16384};
constexpr int kTopks[] = {1, 2, 8, 16};
constexpr int kLocalExperts[] = {1, 4, 32, 36, 128, 288};
constexpr int kShares[] = {1, 4, 8, 16, 33, 66, 132};

std::vector<int> token_counts() {
  std::vector<int> counts;
  for (int t = 0; t <= 20; ++t) counts.push_back(t);
  for (int t : {31, 32, 33, 64, 128, 132, 133, 1024}) counts.push_back(t);
  return counts;
}

// Calls a check with every grid a direct dispatch launches: parts and blocks as the host
// picks them (buffer_low_latency.cpp: the grid capped at the rank's share).
template <typename Check>
void for_each_grid(const Check& check) {
  for (int local : kLocalExperts) {
    for (int topk : kTopks) {
      for (int share : kShares) {
        for (int tokens : token_counts()) {
          const int parts = ll_direct_parts(tokens, topk, local, share);
          for (int hidden : kHiddens) {
            LlDispatchSendParams send{};
            LlDispatchRecvParams recv{};
            send.num_tokens = tokens;
            send.hidden = hidden;
            send.direct_parts = parts;
            recv.ctx.num_ranks = 1;
            recv.num_experts = local;
            const int blocks = std::min(share, ll_direct_dispatch_blocks(send, recv));
            SCOPED_TRACE(testing::Message() << "local " << local << ", top-" << topk << ", share " << share
                                            << ", tokens " << tokens << ", hidden " << hidden << ", parts " << parts
                                            << ", blocks " << blocks);
            check(local, topk, tokens, hidden, parts, blocks);
            if (testing::Test::HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

TEST(LlDirectLayout, EveryEntryIsWrittenByOneBlockOnce) {
  for_each_grid([](int, int topk, int tokens, int, int parts, int blocks) {
    ASSERT_GE(parts, 1);
    ASSERT_LE(parts, std::min(topk, kLlDirectMaxParts));
    if (parts > 1) {
      ASSERT_LE(tokens * parts, blocks);
    }
    std::vector<int> written(static_cast<std::size_t>(tokens) * topk, 0);
    for (int b = 0; b < blocks; ++b) {
      const LlDirectShare s = ll_direct_share(tokens, parts, blocks, b);
      ASSERT_LE(0, s.first);
      ASSERT_LE(s.first, s.last);
      ASSERT_LE(s.last, tokens);
      ASSERT_LE(s.last - s.first, ll_direct_block_tokens(tokens, parts, blocks));
      for (int t = s.first; t < s.last; ++t) {
        for (int k = 0; k < topk; ++k) {
          if (ll_direct_writes_entry(s, k)) ++written[static_cast<std::size_t>(t) * topk + k];
        }
      }
    }
    for (std::size_t i = 0; i < written.size(); ++i) ASSERT_EQ(written[i], 1) << "token " << i / topk << ", entry " << i % topk;
  });
}

TEST(LlDirectLayout, FewTokensSpreadTheirEntries) {
  // One token per rank at 8 ranks of an H100 (32 local experts, 16 blocks): 8 blocks, one
  // entry each, after 4 blocks that only lay out.
  EXPECT_EQ(ll_direct_parts(1, 8, 32, 16), 8);
  EXPECT_EQ(ll_direct_share(1, 8, 12, 3).last, 1);  // a layout block holds nothing
  EXPECT_EQ(ll_direct_share(1, 8, 12, 3).first, 1);
  EXPECT_EQ(ll_direct_share(1, 8, 12, 4).first, 0);
  EXPECT_EQ(ll_direct_share(1, 8, 12, 11).part, 7);
  EXPECT_EQ(ll_direct_parts(3, 8, 32, 16), 4);
  // Many tokens: a block writes every entry of its run, as ever.
  EXPECT_EQ(ll_direct_parts(7, 8, 32, 16), 1);
  EXPECT_EQ(ll_direct_parts(128, 8, 32, 16), 1);
  EXPECT_EQ(ll_direct_parts(1, 1, 32, 16), 1);  // top-1: nothing to share
}

TEST(LlDirectLayout, LayoutOrderIsAPermutationWithIdleWarpsFirst) {
  for_each_grid([](int, int, int tokens, int hidden, int parts, int blocks) {
    const int warps = blocks * kLlWarps;
    std::vector<int> busy(blocks), seen(warps, 0);
    int idle = 0;
    for (int b = 0; b < blocks; ++b) {
      const LlDirectShare s = ll_direct_share(tokens, parts, blocks, b);
      busy[b] = std::min((s.last - s.first) * ll_direct_chunks(hidden), kLlWarps);  // the kernel's item warps
      idle += kLlWarps - busy[b];
    }
    for (int b = 0; b < blocks; ++b) {
      const LlDirectShare s = ll_direct_share(tokens, parts, blocks, b);
      for (int w = 0; w < kLlWarps; ++w) {
        const int rank = ll_direct_layout_rank(tokens, hidden, blocks, s, b, w);
        ASSERT_GE(rank, 0);
        ASSERT_LT(rank, warps);
        ++seen[rank];
        if (tokens <= blocks) {
          ASSERT_EQ(w >= busy[b], rank < idle) << "block " << b << ", warp " << w;
        }
      }
    }
    for (int rank = 0; rank < warps; ++rank) ASSERT_EQ(seen[rank], 1) << "rank " << rank;
  });
}

TEST(LlDirectLayout, LaidOutListIsTheBlocksExperts) {
  for_each_grid([](int local, int, int tokens, int hidden, int parts, int blocks) {
    const int warps = blocks * kLlWarps;
    std::vector<int> by_block(local, -1), listed(local, 0);
    for (int b = 0; b < blocks; ++b) {
      const LlDirectShare s = ll_direct_share(tokens, parts, blocks, b);
      for (int w = 0; w < kLlWarps; ++w) {
        for (int e = ll_direct_layout_rank(tokens, hidden, blocks, s, b, w); e < local; e += warps) by_block[e] = b;
      }
    }
    for (int b = 0; b < blocks; ++b) {
      const LlDirectShare s = ll_direct_share(tokens, parts, blocks, b);
      for (int k = 0; k < ll_direct_laid_out_count(local, tokens, blocks, b); ++k) {
        const int e = ll_direct_laid_out_expert(local, tokens, hidden, blocks, s, b, k);
        if (e < 0) continue;
        ASSERT_LT(e, local);
        ASSERT_EQ(by_block[e], b) << "expert " << e;
        ++listed[e];
      }
    }
    for (int e = 0; e < local; ++e) ASSERT_EQ(listed[e], 1) << "expert " << e;
  });
}

}  // namespace
}  // namespace moe_ep::kernels
