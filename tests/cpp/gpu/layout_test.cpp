// get_dispatch_layout on the GPU against the CPU reference over the matrix:
// tokens {1,128,4096,8191} x experts {8,64,256,288} x ranks {1,2,8,16,64} x top-k {1,6,8},
// random -1 holes, poisoned outputs; plus out-of-range ids reported through the error
// record with token, slot and value.
#include <gtest/gtest.h>

#include <random>

#include "host/error_report.hpp"
#include "host/layout_launch.hpp"
#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "reference/reference.hpp"
#include "support/device_array.hpp"
#include "support/random_inputs.hpp"

namespace moe_ep::test {
namespace {

// Device state + host-mapped error record, as a Buffer would hold them.
struct LayoutRunner {
  runtime::DeviceAllocation state{sizeof(protocol::DeviceState)};
  runtime::HostMappedAllocation error{sizeof(protocol::ErrorRecord)};
  runtime::DeviceAllocation workspace;
  protocol::ErrorRecord* record() const { return static_cast<protocol::ErrorRecord*>(error.host()); }

  reference::Layout run(const std::vector<std::int64_t>& topk, int num_tokens, int num_topk, int num_experts,
                        int num_ranks, int per_node) {
    DeviceArray<std::int64_t> idx(topk);
    DeviceArray<int> per_rank(num_ranks), per_expert(num_experts);
    const int num_nodes = num_ranks > per_node ? num_ranks / per_node : 0;
    DeviceArray<int> per_rdma(std::max(num_nodes, 1));
    DeviceArray<std::uint8_t> in_rank(static_cast<std::size_t>(num_tokens) * num_ranks);
    LayoutArgs a;
    a.topk_idx = idx.view(DType::kInt64, {num_tokens, num_topk});
    a.num_experts = num_experts;
    a.num_tokens_per_rank = per_rank.view(DType::kInt32, {num_ranks});
    a.num_tokens_per_expert = per_expert.view(DType::kInt32, {num_experts});
    a.is_token_in_rank = in_rank.view(DType::kBool, {num_tokens, num_ranks});
    if (num_nodes > 0) a.num_tokens_per_rdma_rank = per_rdma.view(DType::kInt32, {num_nodes});
    host::launch_dispatch_layout(a, num_ranks, per_node, 0, workspace,
                                 static_cast<protocol::DeviceState*>(state.get()),
                                 static_cast<protocol::ErrorRecord*>(error.device()), nullptr);
    MOE_EP_CUDA_CHECK(cudaDeviceSynchronize());
    reference::Layout got;
    got.num_tokens_per_rank = per_rank.download();
    got.num_tokens_per_expert = per_expert.download();
    if (num_nodes > 0) got.num_tokens_per_rdma_rank = per_rdma.download();
    got.is_token_in_rank = in_rank.download();
    return got;
  }
};

TEST(Layout, MatchesReferenceOverTheMatrix) {
  LayoutRunner runner;
  std::mt19937_64 rng(2024);
  int cases = 0;
  for (int num_tokens : {1, 128, 4096, 8191}) {
    for (int num_experts : {8, 64, 256, 288}) {
      for (int num_ranks : {1, 2, 8, 16, 64}) {
        if (num_experts % num_ranks != 0) continue;
        for (int num_topk : {1, 6, 8}) {
          if (num_topk > num_experts) continue;
          const int per_node = num_ranks > 8 ? 8 : num_ranks;
          const auto topk = random_topk_idx(rng, num_tokens, num_topk, num_experts, 0.1, Routing::kUniform, num_ranks);
          const auto got = runner.run(topk, num_tokens, num_topk, num_experts, num_ranks, per_node);
          const auto want = reference::get_dispatch_layout(topk, num_tokens, num_topk, num_experts, num_ranks, per_node);
          SCOPED_TRACE(::testing::Message() << "tokens=" << num_tokens << " experts=" << num_experts
                                            << " ranks=" << num_ranks << " topk=" << num_topk);
          ASSERT_EQ(got.num_tokens_per_rank, want.num_tokens_per_rank);
          ASSERT_EQ(got.num_tokens_per_expert, want.num_tokens_per_expert);
          ASSERT_EQ(got.num_tokens_per_rdma_rank, want.num_tokens_per_rdma_rank);
          ASSERT_EQ(got.is_token_in_rank, want.is_token_in_rank);
          ASSERT_EQ(runner.record()->code, 0);
          ++cases;
        }
      }
    }
  }
  EXPECT_GT(cases, 150);
}

TEST(Layout, OutOfRangeExpertIsReportedWithTokenSlotAndValue) {
  for (std::int64_t bad : {std::int64_t{64}, std::int64_t{-2}, std::int64_t{1} << 40}) {
    LayoutRunner runner;
    std::mt19937_64 rng(5);
    auto topk = random_topk_idx(rng, 100, 8, 64, 0.0, Routing::kUniform, 8);
    topk[37 * 8 + 5] = bad;
    runner.run(topk, 100, 8, 64, 8, 8);
    const protocol::ErrorRecord rec = *runner.record();
    ASSERT_EQ(rec.code, static_cast<int>(protocol::ErrorCode::kBadExpertId));
    EXPECT_EQ(rec.a, 37);
    EXPECT_EQ(rec.b, 5);
    EXPECT_EQ(rec.c, bad);
    const std::string message = host::describe_error(rec);
    EXPECT_NE(message.find("topk_idx[37][5]"), std::string::npos) << message;
    EXPECT_THROW(host::throw_error(rec, message), InvalidArgument);
  }
}

TEST(Layout, HostChecksRejectBadShapesBeforeLaunch) {
  DeviceArray<std::int32_t> idx32(16);
  DeviceArray<int> per_rank(2), per_expert(8);
  DeviceArray<std::uint8_t> in_rank(16);
  LayoutArgs a;
  a.topk_idx = idx32.view(DType::kInt32, {8, 2});
  a.num_experts = 8;
  a.num_tokens_per_rank = per_rank.view(DType::kInt32, {2});
  a.num_tokens_per_expert = per_expert.view(DType::kInt32, {8});
  a.is_token_in_rank = in_rank.view(DType::kBool, {8, 2});
  EXPECT_THROW(host::validate_layout_args(a, 2, 2), InvalidArgument);  // int32 ids
  DeviceArray<std::int64_t> idx(16);
  a.topk_idx = idx.view(DType::kInt64, {8, 2});
  EXPECT_NO_THROW(host::validate_layout_args(a, 2, 2));
  a.num_experts = 9;
  EXPECT_THROW(host::validate_layout_args(a, 2, 2), InvalidArgument);  // 9 % 2
  a.num_experts = 8;
  a.is_token_in_rank = in_rank.view(DType::kBool, {4, 2});
  EXPECT_THROW(host::validate_layout_args(a, 2, 2), InvalidArgument);  // rows
}

}  // namespace
}  // namespace moe_ep::test
