// The NVL buffer carve: sizes and offsets from one function, for any capacity.
#include <gtest/gtest.h>

#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "protocol/error_record.hpp"
#include "protocol/nvl_buffer_layout.hpp"

namespace moe_ep::protocol {
namespace {

TEST(NvlBufferLayout, RegionsDoNotOverlapAndAreAligned) {
  for (std::int64_t max_tokens : {0, 32, 4096, 16384}) {
    const NvlBufferLayout l = carve_nvl_buffer(max_tokens);
    EXPECT_GE(l.expert_counts_offset, static_cast<std::int64_t>(sizeof(NvlHeader)));
    EXPECT_GE(l.send_lists_offset, l.expert_counts_offset + 4 * kMaxExperts);
    EXPECT_GE(l.total_bytes, l.send_lists_offset + 4 * kMaxNvlRanks * max_tokens);
    EXPECT_EQ(l.expert_counts_offset % 128, 0);
    EXPECT_EQ(l.send_lists_offset % 128, 0);
    EXPECT_EQ(l.total_bytes % 128, 0);
  }
}

TEST(NvlBufferLayout, CapacityFromBytesRoundTrips) {
  for (std::int64_t max_tokens : {32, 4096, 8192}) {
    const std::int64_t bytes = carve_nvl_buffer(max_tokens).total_bytes;
    EXPECT_EQ(carve_nvl_buffer_for_bytes(bytes).max_tokens, max_tokens);
    EXPECT_LT(carve_nvl_buffer_for_bytes(bytes - 1).max_tokens, max_tokens);
  }
  EXPECT_EQ(carve_nvl_buffer_for_bytes(16).max_tokens, 0);
  EXPECT_EQ(carve_nvl_buffer_for_bytes(16).total_bytes, 0);
}

TEST(NvlBufferLayout, LargeBuffersCapTheListsAndStageTheRest) {
  const std::int64_t bytes = std::int64_t{1} << 30;
  const NvlBufferLayout l = carve_nvl_buffer_for_bytes(bytes);
  EXPECT_EQ(l.max_tokens, kMaxTokensPerRank);
  EXPECT_EQ(l.staging_offset % 128, 0);
  EXPECT_GE(l.staging_offset, l.send_lists_offset + 4 * kMaxNvlRanks * l.max_tokens);
  EXPECT_LE(l.total_bytes, bytes);
  EXPECT_GT(l.staging_bytes, bytes - l.staging_offset - 128);
  EXPECT_EQ(l.staging_offset + l.staging_bytes, l.total_bytes);
}

TEST(NvlBufferLayout, SizeHintLeavesThePromisedCapacityAndStaging) {
  for (int ranks : {1, 2, 8}) {
    for (std::int64_t tokens : {1, 200, 4096}) {
      const NvlBufferLayout plain = carve_nvl_buffer_for_bytes(Buffer::intranode_size_hint(tokens, ranks));
      EXPECT_GE(plain.max_tokens, tokens);
      const std::int64_t hidden_bytes = 7168 * 2;
      const NvlBufferLayout staged = carve_nvl_buffer_for_bytes(Buffer::intranode_size_hint(tokens, ranks, hidden_bytes));
      EXPECT_GE(staged.max_tokens, tokens);
      EXPECT_GE(staged.staging_bytes, tokens * ranks * hidden_bytes) << "ranks " << ranks << " tokens " << tokens;
    }
  }
  EXPECT_THROW(Buffer::intranode_size_hint(kMaxTokensPerRank + 1, 8), InvalidArgument);
}

TEST(OpTag, PacksEpochOpAndFailure) {
  const std::uint64_t tag = make_tag(12345, Op::kCombine, true);
  EXPECT_EQ(tag_epoch(tag), 12345u);
  EXPECT_EQ(tag_op(tag), static_cast<std::uint32_t>(Op::kCombine));
  EXPECT_TRUE(tag_failed(tag));
  EXPECT_FALSE(tag_failed(make_tag(1, Op::kDispatch)));
}

}  // namespace
}  // namespace moe_ep::protocol
