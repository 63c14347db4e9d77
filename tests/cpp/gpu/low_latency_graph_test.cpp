// Low-latency dispatch + fake expert kernel + combine captured in ONE CUDA graph per rank
// (thread-local capture on the rank's stream) and replayed with fresh inputs copied into
// the captured input tensors before every replay, outputs poisoned, every replay checked
// against the CPU reference; the same with the receive hooks called inside the capture;
// and TEST_CASES.md S5: graphs of several batch sizes (and T) sharing one buffer,
// replayed in random order between eager rounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "runtime/cuda_check.hpp"
#include "support/captured_graph.hpp"
#include "support/low_latency_io.hpp"

namespace moe_ep::test {
namespace {

constexpr std::uint64_t kTimeoutMs = 2000;

LlShape graph_shape(int num_ranks, int max_tokens, ScaleMode mode) {
  LlShape s;
  s.num_ranks = num_ranks;
  s.hidden = 1024;
  s.num_experts = 8 * num_ranks;
  s.num_topk = 8;
  s.max_tokens = max_tokens;
  s.mode = mode;
  return s;
}

// Per rank: the whole round of `set` captured on the rank's stream.
std::vector<CapturedGraph> capture_rounds(Cluster& cluster, LlSet& set, const LlCallOptions& options) {
  std::vector<CapturedGraph> graphs(cluster.num_ranks);
  run_on_ranks(cluster.num_ranks, [&](int r) {
    Buffer& buffer = *cluster.buffers[r];
    cudaStream_t stream = cluster.streams[r];
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer.device()));
    graphs[r].capture(stream, [&] { set.rank(r).enqueue_round(buffer, stream, options); });
  });
  return graphs;
}

void replay(Cluster& cluster, const std::vector<CapturedGraph>& graphs) {
  run_on_ranks(cluster.num_ranks, [&](int r) {
    Buffer& buffer = *cluster.buffers[r];
    cudaStream_t stream = cluster.streams[r];
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer.device()));
    graphs[r].launch(stream);
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
    buffer.check_error();
  });
}

LlRouting routing_of_replay(int i) {
  LlRouting routing;
  routing.hole_fraction = i % 2 == 0 ? 0.1 : 0.4;
  routing.duplicate_fraction = i % 4 == 1 ? 0.2 : 0.05;
  routing.routing = i % 3 == 2 ? Routing::kSkewed : Routing::kUniform;
  return routing;
}

TEST(LowLatencyGraph, DispatchExpertCombineReplayedHundredTimesWithFreshInputs) {
  constexpr int kRanks = 4, kMaxTokens = 64, kReplays = 100;
  const std::vector<int> num_tokens = {64, 40, 1, 23};
  const LlShape shape = graph_shape(kRanks, kMaxTokens, ScaleMode::kFp8);
  auto cluster = make_ll_cluster(kRanks, ll_buffer_bytes(shape, false), ll_options(kTimeoutMs));
  LlSet set(shape);
  set.set_random_inputs(num_tokens, 1);  // shapes and pointers the graphs are captured with
  const std::vector<CapturedGraph> graphs = capture_rounds(*cluster, set, {});
  for (int i = 0; i < kReplays; ++i) {
    set.set_random_inputs(num_tokens, 100 + i, routing_of_replay(i));  // uploads and poisons
    replay(*cluster, graphs);
    ASSERT_EQ(set.count_mismatches("replay " + std::to_string(i)), 0) << "replay " << i;
  }
}

// The receive hooks called inside the capture (the unrelated kernel between send and
// receive is captured too), UE8M0 scales.
TEST(LowLatencyGraph, HooksInsideTheCapturedGraph) {
  constexpr int kRanks = 2, kMaxTokens = 32, kReplays = 20;
  const std::vector<int> num_tokens = {32, 11};
  const LlShape shape = graph_shape(kRanks, kMaxTokens, ScaleMode::kFp8Ue8m0);
  auto cluster = make_ll_cluster(kRanks, ll_buffer_bytes(shape, false), ll_options(kTimeoutMs));
  LlSet set(shape);
  set.set_random_inputs(num_tokens, 2);
  LlCallOptions options;
  options.dispatch_hook = true;
  options.combine_hook = true;
  const std::vector<CapturedGraph> graphs = capture_rounds(*cluster, set, options);
  for (int i = 0; i < kReplays; ++i) {
    set.set_random_inputs(num_tokens, 200 + i, routing_of_replay(i));
    replay(*cluster, graphs);
    ASSERT_EQ(set.count_mismatches("replay " + std::to_string(i)), 0) << "replay " << i;
    for (int r = 0; r < kRanks; ++r) EXPECT_TRUE(set.rank(r).unrelated_work_seen()) << "rank " << r << " replay " << i;
  }
}

// S5: one graph per batch size (one with a smaller T), all on one buffer, replayed in a
// random order (the same on every rank) with eager rounds in between.
TEST(LowLatencyGraph, S5GraphsOfSeveralBatchSizesInRandomOrder) {
  constexpr int kRanks = 2, kRepeatsEach = 5;
  struct Batch {
    int max_tokens;
    std::vector<int> num_tokens;
    ScaleMode mode;
  };
  const std::vector<Batch> batches = {{64, {4, 9}, ScaleMode::kFp8},
                                      {64, {64, 64}, ScaleMode::kBf16},
                                      {64, {64, 17}, ScaleMode::kFp8RoundScale},
                                      {16, {16, 1}, ScaleMode::kFp8Ue8m0}};
  const LlShape eager_shape = graph_shape(kRanks, 64, ScaleMode::kFp8);
  auto cluster = make_ll_cluster(kRanks, ll_buffer_bytes(eager_shape, false), ll_options(kTimeoutMs));
  std::vector<LlSet> sets;
  std::vector<std::vector<CapturedGraph>> graphs;
  sets.reserve(batches.size());
  for (std::size_t g = 0; g < batches.size(); ++g) {
    sets.emplace_back(graph_shape(kRanks, batches[g].max_tokens, batches[g].mode));
    sets[g].set_random_inputs(batches[g].num_tokens, g);
    graphs.push_back(capture_rounds(*cluster, sets[g], {}));
  }
  LlSet eager(eager_shape);

  // Every graph and the eager round (index batches.size()) 5 times, in a random order.
  std::vector<std::size_t> order;
  for (int i = 0; i < kRepeatsEach; ++i) {
    for (std::size_t g = 0; g <= batches.size(); ++g) order.push_back(g);
  }
  std::mt19937_64 rng(5);
  std::shuffle(order.begin(), order.end(), rng);
  for (std::size_t step = 0; step < order.size(); ++step) {
    const std::size_t g = order[step];
    const std::uint64_t seed = 1000 + step;
    if (g == batches.size()) {
      eager.set_random_inputs({50, 64}, seed);
      run_ll_round_on_all_ranks(*cluster, eager);
      EXPECT_EQ(eager.count_mismatches("step " + std::to_string(step) + " eager"), 0);
      continue;
    }
    sets[g].set_random_inputs(batches[g].num_tokens, seed, routing_of_replay(static_cast<int>(step)));
    replay(*cluster, graphs[g]);
    EXPECT_EQ(sets[g].count_mismatches("step " + std::to_string(step) + " graph " + std::to_string(g)), 0);
  }
}

}  // namespace
}  // namespace moe_ep::test
