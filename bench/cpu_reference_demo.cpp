// CPU reference run of dispatch + combine (8 ranks, 512 tokens each, hidden 7168, top-8
// of 256 experts, 10% holes), with the laws every GPU run is held to: received counts add
// up, and combining all-ones rows returns, per token, the number of ranks it went to.
#include "cpu_reference_demo.hpp"

#include <chrono>
#include <cstdio>
#include <random>

#include "reference/reference.hpp"
#include "support/random_inputs.hpp"

namespace moe_ep::bench {

int run_cpu_reference_demo() {
  namespace ref = moe_ep::reference;
  constexpr int kRanks = 8, kTokens = 512, kHidden = 7168, kTopk = 8, kExperts = 256;
  const auto begin = std::chrono::steady_clock::now();
  std::mt19937_64 rng(7);
  ref::DispatchSpec spec{kRanks, kExperts, kTopk, kHidden * 2, 0, 1};
  std::vector<ref::RankDispatchInput> inputs(kRanks);
  for (auto& in : inputs) {
    in.num_tokens = kTokens;
    in.topk_idx = test::random_topk_idx(rng, kTokens, kTopk, kExperts, 0.1, test::Routing::kUniform, kRanks);
    in.x.assign(static_cast<std::size_t>(kTokens) * kHidden * 2, 0);
    const std::uint16_t one = ref::float_to_bf16(1.0f);
    for (std::size_t i = 0; i < in.x.size(); i += 2) in.x[i] = one & 0xff, in.x[i + 1] = one >> 8;
  }
  const auto dispatched = ref::dispatch(spec, inputs);
  std::vector<ref::RankCombineInput> combine_inputs(kRanks);
  std::vector<int> home_tokens(kRanks, kTokens);
  long long sent = 0, received = 0;
  for (int r = 0; r < kRanks; ++r) {
    const auto layout = ref::get_dispatch_layout(inputs[r].topk_idx, kTokens, kTopk, kExperts, kRanks, kRanks);
    for (int n : layout.num_tokens_per_rank) sent += n;
    received += dispatched[r].num_recv_tokens;
    combine_inputs[r].x.resize(static_cast<std::size_t>(dispatched[r].num_recv_tokens) * kHidden);
    for (std::size_t i = 0; i < combine_inputs[r].x.size(); ++i) {
      std::uint16_t v;
      v = static_cast<std::uint16_t>(dispatched[r].recv_x[2 * i] | (dispatched[r].recv_x[2 * i + 1] << 8));
      combine_inputs[r].x[i] = v;
    }
  }
  const auto combined = ref::combine(kHidden, 0, dispatched, home_tokens, combine_inputs);
  long long bad = 0;
  for (int r = 0; r < kRanks; ++r) {
    const auto layout = ref::get_dispatch_layout(inputs[r].topk_idx, kTokens, kTopk, kExperts, kRanks, kRanks);
    for (int t = 0; t < kTokens; ++t) {
      int ranks = 0;
      for (int q = 0; q < kRanks; ++q) ranks += layout.is_token_in_rank[static_cast<std::size_t>(t) * kRanks + q];
      for (int c = 0; c < kHidden; ++c) bad += combined[r].combined_x[static_cast<std::size_t>(t) * kHidden + c] != ranks;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  std::printf("\nCPU reference, 8 ranks x 512 tokens, hidden 7168, top-8 of 256 experts, 10%% holes:\n");
  std::printf("%-28s %lld\n%-28s %lld\n%-28s %s\n%-28s %lld\n%-28s %.2f s\n", "tokens sent (token, rank)", sent,
              "tokens received", received, "counts add up", sent == received ? "yes" : "NO",
              "combine(all-ones) mismatches", bad, "time", seconds);
  return sent == received && bad == 0 ? 0 : 1;
}

}  // namespace moe_ep::bench
