// The NVL buffer carve: sizes and offsets from one function, for any capacity.
#include <gtest/gtest.h>

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

TEST(OpTag, PacksEpochOpAndFailure) {
  const std::uint64_t tag = make_tag(12345, Op::kCombine, true);
  EXPECT_EQ(tag_epoch(tag), 12345u);
  EXPECT_EQ(tag_op(tag), static_cast<std::uint32_t>(Op::kCombine));
  EXPECT_TRUE(tag_failed(tag));
  EXPECT_FALSE(tag_failed(make_tag(1, Op::kDispatch)));
}

}  // namespace
}  // namespace moe_ep::protocol
