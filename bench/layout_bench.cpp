// get_dispatch_layout timing for ht-v3 routing (4096 tokens, top-8) at 1/8/64 ranks and
// DeepEP's reference point (128 experts, 1 rank): median of 200 event-timed launches,
// rotating 4 input sets; bandwidth counts the topk_idx bytes read.
#include "layout_bench.hpp"

#include <random>

#include "host/layout_launch.hpp"
#include "runtime/cuda_check.hpp"
#include "support/device_array.hpp"
#include "support/random_inputs.hpp"

namespace moe_ep::bench {

void run_layout_bench(Report& report, double copy_bandwidth) {
  struct Case {
    int num_experts, num_ranks;
  };
  constexpr int kTokens = 4096, kTopk = 8, kSets = 4, kIters = 200;
  runtime::DeviceAllocation state(sizeof(protocol::DeviceState));
  runtime::HostMappedAllocation error(sizeof(protocol::ErrorRecord));
  runtime::DeviceAllocation workspace;
  std::mt19937_64 rng(99);
  for (Case c : {Case{128, 1}, Case{256, 1}, Case{256, 8}, Case{256, 64}}) {
    const int per_node = std::min(c.num_ranks, 8);
    const int num_nodes = c.num_ranks > per_node ? c.num_ranks / per_node : 0;
    std::vector<test::DeviceArray<std::int64_t>> topk;
    for (int i = 0; i < kSets; ++i) {
      topk.emplace_back(test::random_topk_idx(rng, kTokens, kTopk, c.num_experts, 0.0, test::Routing::kUniform,
                                              c.num_ranks));
    }
    test::DeviceArray<int> per_rank(c.num_ranks), per_expert(c.num_experts), per_rdma(std::max(num_nodes, 1));
    test::DeviceArray<std::uint8_t> in_rank(static_cast<std::size_t>(kTokens) * c.num_ranks);
    std::vector<LayoutArgs> args(kSets);
    for (int i = 0; i < kSets; ++i) {
      LayoutArgs& a = args[i];
      a.topk_idx = topk[i].view(DType::kInt64, {kTokens, kTopk});
      a.num_experts = c.num_experts;
      a.num_tokens_per_rank = per_rank.view(DType::kInt32, {c.num_ranks});
      a.num_tokens_per_expert = per_expert.view(DType::kInt32, {c.num_experts});
      a.is_token_in_rank = in_rank.view(DType::kBool, {kTokens, c.num_ranks});
      if (num_nodes > 0) a.num_tokens_per_rdma_rank = per_rdma.view(DType::kInt32, {num_nodes});
    }
    StreamTimer timer;
    const Stats us = timer.repeat(10, kIters, [&](cudaStream_t stream, int it) {
      host::launch_dispatch_layout(args[it % kSets], c.num_ranks, per_node, 0, workspace,
                                   static_cast<protocol::DeviceState*>(state.get()),
                                   static_cast<protocol::ErrorRecord*>(error.device()), stream);
    });
    if (static_cast<protocol::ErrorRecord*>(error.host())->code != 0) throw std::runtime_error("layout bench: device error");
    Row row;
    row.bench = "layout";
    row.problem = c.num_experts == 256 ? "ht-v3" : "ht-v3-e128";
    row.num_ranks = c.num_ranks;
    row.time_us = us;
    const double bytes = static_cast<double>(kTokens) * kTopk * 8;
    row.floor_us = bytes / copy_bandwidth * 1e6;
    row.efficiency = row.floor_us / row.time_us.median;
    row.note = "topk_idx " + std::to_string(static_cast<int>(bytes / 1024)) + " KiB read";
    report.add(row);
  }
}

}  // namespace moe_ep::bench
