// Intranode dispatch (num_worst_tokens > 0: no host sync) + combine captured into a CUDA
// graph on every rank's compute stream (thread-local capture mode) and replayed with fresh
// inputs written into the same device arrays, outputs poisoned before every replay, each
// replay checked against the CPU reference; plus TEST_CASES.md S5: graphs of several batch
// sizes sharing one buffer, replayed in random order between eager calls.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "runtime/cuda_check.hpp"
#include "support/captured_graph.hpp"
#include "support/rank_io.hpp"

namespace moe_ep::test {
namespace {

constexpr std::uint64_t kTimeoutMs = 2000;

IoShape graph_shape(int num_ranks, const std::vector<int>& num_tokens) {
  IoShape s;
  s.num_ranks = num_ranks;
  s.hidden = 1024;
  s.num_experts = 8 * num_ranks;
  s.num_topk = 4;
  s.max_tokens = 0;
  for (int n : num_tokens) {
    s.max_tokens = std::max(s.max_tokens, n);
    s.num_worst_tokens += n;  // every token of every rank may arrive
  }
  return s;
}

// Per rank: dispatch + combine of `io`, captured on the rank's compute stream.
std::vector<CapturedGraph> capture_dispatch_combine(Cluster& cluster, IoSet& io) {
  std::vector<CapturedGraph> graphs(cluster.num_ranks);
  run_on_ranks(cluster.num_ranks, [&](int r) {
    Buffer& buffer = *cluster.buffers[r];
    cudaStream_t stream = cluster.streams[r];
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer.device()));
    graphs[r].capture(stream, [&] {
      io.rank(r).dispatch(buffer, stream);
      io.rank(r).combine(buffer, stream);
    });
  });
  return graphs;
}

// One replay: the layout of the fresh top-k ids runs eagerly, then the graph.
void replay(Cluster& cluster, IoSet& io, const std::vector<CapturedGraph>& graphs) {
  run_on_ranks(cluster.num_ranks, [&](int r) {
    Buffer& buffer = *cluster.buffers[r];
    cudaStream_t stream = cluster.streams[r];
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer.device()));
    io.rank(r).layout(buffer, stream);
    graphs[r].launch(stream);
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
    buffer.check_error();
  });
}

TEST(Graph, DispatchCombineReplayedWithFreshInputs) {
  constexpr int kRanks = 4, kTokens = 48, kReplays = 20;
  const std::vector<int> num_tokens(kRanks, kTokens);
  Cluster cluster(kRanks, Buffer::intranode_size_hint(64, kRanks), options_with_timeout_ms(kTimeoutMs));
  IoSet io(graph_shape(kRanks, num_tokens));
  io.set_random_inputs(num_tokens, 1);  // shapes and pointers the graph is captured with
  const std::vector<CapturedGraph> graphs = capture_dispatch_combine(cluster, io);
  for (int i = 0; i < kReplays; ++i) {
    io.set_random_inputs(num_tokens, 100 + i, i % 2 == 0 ? 0.1 : 0.4, i % 3 == 2 ? Routing::kSkewed : Routing::kUniform);
    replay(cluster, io, graphs);
    EXPECT_EQ(io.count_mismatches("replay " + std::to_string(i)), 0) << "replay " << i;
  }
}

// S5: one graph per batch size, all on one buffer, replayed in a random order (the same on
// every rank) with eager host-synced rounds in between.
TEST(Graph, S5GraphsOfSeveralBatchSizesInRandomOrder) {
  constexpr int kRanks = 2, kSteps = 16;
  const std::vector<std::vector<int>> batch_sizes = {{4, 9}, {32, 32}, {64, 17}};
  Cluster cluster(kRanks, Buffer::intranode_size_hint(64, kRanks), options_with_timeout_ms(kTimeoutMs));
  std::vector<IoSet> sets;
  std::vector<std::vector<CapturedGraph>> graphs;
  sets.reserve(batch_sizes.size());
  for (std::size_t g = 0; g < batch_sizes.size(); ++g) {
    sets.emplace_back(graph_shape(kRanks, batch_sizes[g]));
    sets[g].set_random_inputs(batch_sizes[g], g);
    graphs.push_back(capture_dispatch_combine(cluster, sets[g]));
  }
  IoShape eager_shape = graph_shape(kRanks, {64, 64});
  eager_shape.num_worst_tokens = 0;
  IoSet eager(eager_shape);

  std::mt19937_64 rng(5);
  std::uniform_int_distribution<std::size_t> pick(0, batch_sizes.size());  // the last value: an eager round
  for (int step = 0; step < kSteps; ++step) {
    const std::size_t g = pick(rng);
    const std::uint64_t seed = 1000 + step;
    if (g == batch_sizes.size()) {
      eager.set_random_inputs({50, 64}, seed);
      run_round_on_all_ranks(cluster, eager);
      EXPECT_EQ(eager.count_mismatches("step " + std::to_string(step) + " eager"), 0);
      continue;
    }
    sets[g].set_random_inputs(batch_sizes[g], seed);
    replay(cluster, sets[g], graphs[g]);
    EXPECT_EQ(sets[g].count_mismatches("step " + std::to_string(step) + " graph " + std::to_string(g)), 0);
  }
}

}  // namespace
}  // namespace moe_ep::test
