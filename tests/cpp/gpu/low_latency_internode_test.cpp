// Low latency across (pretend) nodes: in-process ranks on one GPU split into nodes; peers
// on other nodes go through the emulated RDMA transport (they push into mirror slots, are
// never read in place), same-node peers through NVLink peer memory. Results must equal the
// CPU reference exactly as on one node: 2 nodes x 4 ranks, 4 x 2, 2 x 1, and every peer by
// RDMA (allow_nvlink_for_low_latency = false), in FP8 / BF16, with hooks, zero_copy, LogFMT;
// x changed between a hooked combine's send and its hook.
#include <gtest/gtest.h>

#include <string>

#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "runtime/cuda_check.hpp"
#include "support/low_latency_scenario.hpp"

namespace moe_ep::test {
namespace {

constexpr std::uint64_t kTimeoutMs = 2000;

struct Topology {
  int num_ranks;
  int ranks_per_node;
  bool allow_nvlink;
};

std::string name_of(const ::testing::TestParamInfo<Topology>& info) {
  const Topology& t = info.param;
  return std::to_string(t.num_ranks / t.ranks_per_node) + "x" + std::to_string(t.ranks_per_node) +
         (t.allow_nvlink ? "" : "_AllRdma");
}

class LowLatencyInternode : public ::testing::TestWithParam<Topology> {
 protected:
  void expect_exact(LowLatencyScenario s) {
    const Topology& t = GetParam();
    s.shape.num_ranks = t.num_ranks;
    s.num_tokens = uneven_tokens(t.num_ranks, s.shape.max_tokens);
    SCOPED_TRACE(s.name());
    BufferOptions options = ll_options(kTimeoutMs);
    options.emulated_ranks_per_node = t.ranks_per_node;
    options.allow_nvlink_for_low_latency = t.allow_nvlink;
    const std::int64_t bytes = Buffer::low_latency_size_hint(s.shape.max_tokens, s.shape.hidden, t.num_ranks,
                                                             s.shape.num_experts, t.ranks_per_node, t.allow_nvlink);
    auto cluster = make_ll_cluster(t.num_ranks, bytes, options);
    EXPECT_EQ(run_low_latency_scenario(*cluster, s), 0);
  }
  static LowLatencyScenario scenario(int hidden, int experts_per_rank, int topk, int max_tokens, ScaleMode mode,
                                     std::uint64_t seed) {
    LowLatencyScenario s;
    s.shape.hidden = hidden;
    s.shape.num_experts = experts_per_rank * GetParam().num_ranks;
    s.shape.num_topk = topk;
    s.shape.max_tokens = max_tokens;
    s.shape.mode = mode;
    s.seed = seed;
    // RDMA mirrors keep max_tokens rows per (expert, source): no token names an expert twice.
    s.routing.duplicate_fraction = 0.0;
    return s;
  }
};

TEST_P(LowLatencyInternode, Fp8Hidden7168) {
  expect_exact(scenario(7168, 4, 8, 64, ScaleMode::kFp8, 400));
}

TEST_P(LowLatencyInternode, Fp8Ue8m0OddHiddenTwoRounds) {
  LowLatencyScenario s = scenario(2176, 3, 6, 32, ScaleMode::kFp8Ue8m0, 401);  // a 128-channel last chunk
  s.repetitions = 2;
  expect_exact(s);
}

TEST_P(LowLatencyInternode, Bf16WithHooks) {
  LowLatencyScenario s = scenario(4096, 4, 8, 48, ScaleMode::kBf16, 402);
  s.call.dispatch_hook = true;
  s.call.combine_hook = true;
  expect_exact(s);
}

TEST_P(LowLatencyInternode, ZeroCopyCombine) {
  LowLatencyScenario s = scenario(3072, 2, 4, 32, ScaleMode::kFp8RoundScale, 403);
  s.call.zero_copy = true;
  s.repetitions = 2;
  expect_exact(s);
}

TEST_P(LowLatencyInternode, LogFmtCombine) {
  LowLatencyScenario s = scenario(2048, 4, 8, 32, ScaleMode::kFp8, 404);
  s.call.use_logfmt = true;
  expect_exact(s);
}

INSTANTIATE_TEST_SUITE_P(Topologies, LowLatencyInternode,
                         ::testing::Values(Topology{8, 4, true}, Topology{8, 2, true}, Topology{2, 1, true},
                                           Topology{4, 4, false}),
                         name_of);

// Pretend nodes must split the group evenly: refused before any collective.
TEST(LowLatencyInternodeErrors, RanksPerNodeMustDivideTheGroup) {
  auto groups = make_in_process_group({0, 0, 0, 0});
  BufferOptions options = ll_options(kTimeoutMs);
  options.emulated_ranks_per_node = 3;
  run_on_ranks(4, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    try {
      Buffer buffer(groups[r], 0, 1 << 20, options);
      ADD_FAILURE() << "rank " << r << ": a Buffer with 3 ranks per node in a group of 4";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("emulated_ranks_per_node=3 must divide the group size 4"), std::string::npos)
          << e.what();
    }
  });
}

// A mirror slot keeps max_tokens rows per (expert, source): rank 0's tokens, each naming
// rank 1's expert in both top-k slots (2 x 16 rows for 16 slots), fail the dispatch on the
// receiver with the error that says why, instead of overflowing into the next expert.
TEST(LowLatencyInternodeErrors, DuplicateExpertsOverflowingAMirrorSlotFailClearly) {
  LlShape shape;
  shape.num_ranks = 2;
  shape.hidden = 2048;
  shape.num_experts = 4;
  shape.num_topk = 2;
  shape.max_tokens = 16;
  shape.mode = ScaleMode::kFp8;
  BufferOptions options = ll_options(kTimeoutMs);
  options.emulated_ranks_per_node = 1;
  auto cluster = make_ll_cluster(2, Buffer::low_latency_size_hint(16, 2048, 2, 4, 1), options);
  LlSet set(shape);
  set.set_random_inputs({16, 0}, 500);
  auto inputs = set.inputs();
  for (std::int64_t& e : inputs[0].topk_idx) e = 2;  // rank 1's first expert, in both slots
  set.set_inputs(inputs);
  try {
    run_ll_round_on_all_ranks(*cluster, set);
    ADD_FAILURE() << "the overflowing dispatch succeeded";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("rank 0 (reached by RDMA) sends 32 rows to one local expert, but its mirror slot holds 16"),
              std::string::npos)
        << what;
  }
}

// A staged combine with a hook (peers that cannot read x in place) takes every row, its
// own too, into the buffer at the send: x may change before the hook, as with deep_ep.
// (Without a hook an owner's own rows stay in x, read by its receive in the same launch.)
TEST(LowLatencyInternodeHooks, XMayChangeBetweenTheCombineSendAndItsHook) {
  constexpr int kRanks = 4, kPerNode = 2, kTokens = 32, kHidden = 2048, kExperts = 8;
  LlShape shape;
  shape.num_ranks = kRanks;
  shape.hidden = kHidden;
  shape.num_experts = kExperts;
  shape.num_topk = 4;
  shape.max_tokens = kTokens;
  shape.mode = ScaleMode::kBf16;
  BufferOptions options = ll_options(kTimeoutMs);
  options.emulated_ranks_per_node = kPerNode;
  auto cluster = make_ll_cluster(
      kRanks, Buffer::low_latency_size_hint(kTokens, kHidden, kRanks, kExperts, kPerNode), options);
  LlSet set(shape);
  set.set_random_inputs(uneven_tokens(kRanks, kTokens), 501, {.duplicate_fraction = 0.0});
  LlCallOptions hooked;
  hooked.combine_hook = true;
  run_on_ranks(kRanks, [&](int r) {
    Buffer& buffer = *cluster->buffers[r];
    cudaStream_t stream = cluster->streams[r];
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer.device()));
    LlRankIo& io = set.rank(r);
    io.complete(io.dispatch(buffer, stream, hooked), false, stream, hooked);
    io.expert_compute(buffer, stream, hooked);
    const LowLatencyCall combine = io.combine(buffer, stream, hooked);
    const TensorView x = io.combine_x_view();
    MOE_EP_CUDA_CHECK(cudaMemsetAsync(x.data, kPoisonByte, static_cast<std::size_t>(x.numel()) * 2, stream));
    io.complete(combine, true, stream, hooked);
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
    buffer.check_error();
  });
  EXPECT_EQ(set.count_mismatches("x overwritten between the combine's send and its hook"), 0);
}

}  // namespace
}  // namespace moe_ep::test
