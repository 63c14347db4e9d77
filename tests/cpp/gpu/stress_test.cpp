// TEST_CASES.md stress cases for intranode dispatch/combine on in-process ranks of one GPU,
// every output poisoned before each call (S3) and compared with the CPU reference:
// S2 tokens exactly at the buffer's capacity, repeated; S4 shapes alternating 1 -> max -> 1
// on the same buffers; S6 two micro-batches interleaved; S7 bitwise-repeatable outputs.
// (S1, skewed / one-rank routing, is in intranode_test.cpp; S5 graphs in graph_test.cpp.)
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "runtime/cuda_check.hpp"
#include "support/rank_io.hpp"

namespace moe_ep::test {
namespace {

constexpr std::uint64_t kTimeoutMs = 2000;

IoShape shape_of(int num_ranks, int hidden, int num_experts, int num_topk, int max_tokens) {
  IoShape s;
  s.num_ranks = num_ranks;
  s.hidden = hidden;
  s.num_experts = num_experts;
  s.num_topk = num_topk;
  s.max_tokens = max_tokens;
  return s;
}

// S2: every rank sends exactly Buffer::max_dispatch_tokens() tokens, many times over, with
// and without the host sync; the inputs stay the same, so one reference checks them all.
TEST(Stress, S2TokensAtCapacityRepeated) {
  constexpr int kRanks = 2, kIterationsPerMode = 100;
  Cluster cluster(kRanks, Buffer::intranode_size_hint(256, kRanks), options_with_timeout_ms(kTimeoutMs));
  const int capacity = static_cast<int>(cluster.buffers[0]->max_dispatch_tokens());
  ASSERT_GE(capacity, 256);
  for (bool worst_tokens : {false, true}) {
    IoShape shape = shape_of(kRanks, 512, 16, 4, capacity);
    if (worst_tokens) shape.num_worst_tokens = kRanks * capacity;
    SCOPED_TRACE(worst_tokens ? "num_worst_tokens" : "host sync");
    IoSet io(shape);
    io.set_random_inputs(tokens_everywhere(shape, capacity), worst_tokens ? 22 : 21, 0.0);
    std::int64_t bad = 0;
    for (int i = 0; i < kIterationsPerMode && bad == 0; ++i) {
      if (i > 0) io.poison_outputs();
      run_round_on_all_ranks(cluster, io);
      bad = io.count_mismatches("iteration " + std::to_string(i));
    }
    EXPECT_EQ(bad, 0);
  }
}

// S4: 1 -> max -> 1 tokens (and uneven mixes), alternating between two payload shapes
// (hidden, experts, top-k) on the same buffers, with nothing cleaned between calls.
TEST(Stress, S4ShapesAlternateOneMaxOne) {
  constexpr int kRanks = 2;
  Cluster cluster(kRanks, Buffer::intranode_size_hint(128, kRanks), options_with_timeout_ms(kTimeoutMs));
  const int max = static_cast<int>(cluster.buffers[0]->max_dispatch_tokens());
  IoSet narrow(shape_of(kRanks, 512, 16, 4, max));
  IoSet wide(shape_of(kRanks, 2048, 32, 8, max));
  const std::vector<std::vector<int>> steps = {{1, 1},   {max, max}, {1, 1},     {max, 1},   {1, max},
                                               {1, 1},   {max, max}, {0, 1},     {max, max}, {1, 1}};
  for (std::size_t i = 0; i < steps.size(); ++i) {
    for (IoSet* io : {&narrow, &wide}) {
      const std::string context = "step " + std::to_string(i) + " tokens " + std::to_string(steps[i][0]) + "," +
                                  std::to_string(steps[i][1]) + " hidden " + std::to_string(io->shape().hidden);
      io->set_random_inputs(steps[i], 40 + i + io->shape().hidden);
      run_round_on_all_ranks(cluster, *io);
      EXPECT_EQ(io->count_mismatches(context), 0) << context;
    }
  }
}

// S6: two micro-batches on one buffer, both handles alive: dispatch A, dispatch B,
// combine A, combine B, with one sync at the end (A waits on the host for its counts, B
// uses num_worst_tokens).
TEST(Stress, S6TwoMicroBatchesInterleaved) {
  constexpr int kRanks = 3, kTokens = 48;
  Cluster cluster(kRanks, Buffer::intranode_size_hint(64, kRanks), options_with_timeout_ms(kTimeoutMs));
  IoShape shape_a = shape_of(kRanks, 1024, 24, 6, kTokens);
  IoShape shape_b = shape_a;
  shape_b.num_worst_tokens = kRanks * kTokens;
  IoSet a(shape_a), b(shape_b);
  for (int round = 0; round < 3; ++round) {
    a.set_random_inputs(tokens_everywhere(shape_a, kTokens), 60 + round);
    b.set_random_inputs({kTokens, 7, kTokens / 2}, 70 + round, 0.2, Routing::kSkewed);
    run_on_ranks(kRanks, [&](int r) {
      Buffer& buffer = *cluster.buffers[r];
      cudaStream_t stream = cluster.streams[r];
      MOE_EP_CUDA_CHECK(cudaSetDevice(buffer.device()));
      a.rank(r).layout(buffer, stream);
      b.rank(r).layout(buffer, stream);
      a.rank(r).dispatch(buffer, stream);
      b.rank(r).dispatch(buffer, stream);
      a.rank(r).combine(buffer, stream);
      b.rank(r).combine(buffer, stream);
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
      buffer.check_error();
    });
    EXPECT_EQ(a.count_mismatches("micro-batch A, round " + std::to_string(round)), 0);
    EXPECT_EQ(b.count_mismatches("micro-batch B, round " + std::to_string(round)), 0);
  }
}

// S7: the same dispatch + combine twice on the same inputs (outputs poisoned between)
// gives bitwise-equal outputs, combine's sums included.
TEST(Stress, S7SameCallTwiceBitwiseEqual) {
  constexpr int kRanks = 4, kTokens = 96;
  Cluster cluster(kRanks, Buffer::intranode_size_hint(kTokens, kRanks), options_with_timeout_ms(kTimeoutMs));
  IoShape shape = shape_of(kRanks, 1024, 32, 8, kTokens);
  IoSet io(shape);
  io.set_random_inputs(tokens_everywhere(shape, kTokens), 77, 0.1, Routing::kSkewed);
  run_round_on_all_ranks(cluster, io);
  ASSERT_EQ(io.count_mismatches("first call"), 0);
  std::vector<RankOutputs> first;
  for (int r = 0; r < kRanks; ++r) first.push_back(io.rank(r).download());
  io.poison_outputs();
  run_round_on_all_ranks(cluster, io);
  for (int r = 0; r < kRanks; ++r) {
    std::string difference;
    EXPECT_TRUE(bitwise_equal(first[r], io.rank(r).download(), &difference)) << "rank " << r << ": " << difference;
  }
}

}  // namespace
}  // namespace moe_ep::test
