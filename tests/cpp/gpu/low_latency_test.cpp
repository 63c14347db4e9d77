// Low-latency dispatch/combine against the CPU reference on in-process ranks sharing one
// GPU: ranks 1/2/4/8, hidden 2048..7168, top-k 1/8/16, experts 8 per rank / 256 / 288,
// T 1/32/64/128 and 1024 once, FP8 in all three scale modes and BF16, -1 holes, duplicate
// experts, ranks with zero tokens, all tokens to one expert (S1), skewed routing, LogFMT,
// zero_copy, async_finish, receive hooks, int32 ids (B4), the optional stats tensors, and a
// rank alone alternating one-launch and hook calls, FP8 scales staged by some senders and
// written in place by others.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>

#include "moe_ep/buffer.hpp"
#include "protocol/ll_buffer_layout.hpp"
#include "support/low_latency_scenario.hpp"

namespace moe_ep::test {
namespace {

constexpr std::uint64_t kTimeoutMs = 2000;

// One cluster per rank count, reused by every scenario without staging: its buffers hold
// the in-process region of the largest call here (T = 1024, hidden 7168).
std::map<int, std::unique_ptr<Cluster>>& shared_clusters() {
  static std::map<int, std::unique_ptr<Cluster>> clusters;
  return clusters;
}

Cluster& shared_cluster(int num_ranks) {
  auto& c = shared_clusters()[num_ranks];
  if (!c) {
    const std::int64_t bytes = protocol::ll_region_bytes(kMaxLowLatencyTokens, 7168, 288, /*combine_staging=*/false);
    c = make_ll_cluster(num_ranks, bytes, ll_options(kTimeoutMs));
  }
  return *c;
}

void expect_exact(const LowLatencyScenario& s) {
  SCOPED_TRACE(s.name());
  if (s.needs_staging()) {
    // Staged combines need the size hint's region: a cluster of their own.
    auto cluster = make_ll_cluster(s.shape.num_ranks, s.buffer_bytes(), ll_options(kTimeoutMs));
    EXPECT_EQ(run_low_latency_scenario(*cluster, s), 0);
    return;
  }
  // A failed scenario leaves the shared buffers unusable: rebuild them for the next one, so
  // one failure does not cascade.
  try {
    EXPECT_EQ(run_low_latency_scenario(shared_cluster(s.shape.num_ranks), s), 0);
  } catch (...) {
    shared_clusters().erase(s.shape.num_ranks);
    throw;
  }
  if (::testing::Test::HasFailure()) shared_clusters().erase(s.shape.num_ranks);
}

LowLatencyScenario scenario(int num_ranks, int hidden, int num_experts, int num_topk, int max_tokens, ScaleMode mode,
                            std::uint64_t seed) {
  LowLatencyScenario s;
  s.shape.num_ranks = num_ranks;
  s.shape.hidden = hidden;
  s.shape.num_experts = num_experts;
  s.shape.num_topk = num_topk;
  s.shape.max_tokens = max_tokens;
  s.shape.mode = mode;
  s.num_tokens = uneven_tokens(num_ranks, max_tokens);
  s.seed = seed;
  return s;
}

class LowLatencyRanks : public ::testing::TestWithParam<int> {
 protected:
  int ranks() const { return GetParam(); }
};

TEST_P(LowLatencyRanks, Fp8Hidden7168EightExpertsPerRank) {
  expect_exact(scenario(ranks(), 7168, 8 * ranks(), 8, 128, ScaleMode::kFp8, 10 + ranks()));
}

TEST_P(LowLatencyRanks, Fp8RoundScaleHidden4096Experts256) {
  expect_exact(scenario(ranks(), 4096, 256, 8, 64, ScaleMode::kFp8RoundScale, 20 + ranks()));
}

TEST_P(LowLatencyRanks, Fp8Ue8m0Hidden5120Experts288) {
  expect_exact(scenario(ranks(), 5120, 288, 8, 32, ScaleMode::kFp8Ue8m0, 30 + ranks()));
}

TEST_P(LowLatencyRanks, Bf16Top16Hidden2048) {
  expect_exact(scenario(ranks(), 2048, std::max(32, 8 * ranks()), 16, 64, ScaleMode::kBf16, 40 + ranks()));
}

TEST_P(LowLatencyRanks, Top1OneTokenT1Hidden3072) {
  LowLatencyScenario s = scenario(ranks(), 3072, 8 * ranks(), 1, 1, ScaleMode::kFp8, 50 + ranks());
  s.routing.hole_fraction = 0.0;
  s.num_tokens = std::vector<int>(ranks(), 1);
  expect_exact(s);
  s.shape.mode = ScaleMode::kBf16;
  if (ranks() > 1) s.num_tokens[0] = 0;
  expect_exact(s);
}

// S1: every token of every rank names one expert (owned by the last rank) in slot 0, the
// other slots are holes; then the same with the remaining slots random.
TEST_P(LowLatencyRanks, S1AllTokensToOneExpert) {
  for (bool other_slots_random : {false, true}) {
    LowLatencyScenario s = scenario(ranks(), 2048, 8 * ranks(), 4, 128, ScaleMode::kFp8, 60 + ranks());
    s.num_tokens = std::vector<int>(ranks(), 128);
    s.routing.duplicate_fraction = 0.0;
    const int hot = 8 * ranks() - 1;
    s.edit_inputs = [&](std::vector<reference::RankLowLatencyInput>& inputs) {
      for (auto& in : inputs) {
        for (int t = 0; t < in.num_tokens; ++t) {
          for (int j = 0; j < 4; ++j) {
            std::int64_t& id = in.topk_idx[static_cast<std::size_t>(t) * 4 + j];
            if (j == 0) {
              id = hot;
            } else if (!other_slots_random || id == hot) {
              id = -1;
            }
          }
        }
      }
    };
    s.label = other_slots_random ? "S1 one hot expert + random slots" : "S1 one hot expert only";
    expect_exact(s);
  }
}

TEST_P(LowLatencyRanks, SkewedAndOneRankRouting) {
  for (Routing routing : {Routing::kSkewed, Routing::kOneRank}) {
    LowLatencyScenario s = scenario(ranks(), 2048, 8 * ranks(), 4, 96, ScaleMode::kFp8, 70 + ranks());
    s.routing.routing = routing;
    s.shape.mode = routing == Routing::kSkewed ? ScaleMode::kFp8Ue8m0 : ScaleMode::kBf16;
    expect_exact(s);
  }
}

// B2: many holes, half the ranks without tokens, one rank whose tokens are all holes.
TEST_P(LowLatencyRanks, ManyHolesAndRanksWithoutTokens) {
  LowLatencyScenario s = scenario(ranks(), 2048, 8 * ranks(), 8, 64, ScaleMode::kFp8RoundScale, 80 + ranks());
  s.routing.hole_fraction = 0.5;
  for (int r = 0; r < ranks(); ++r) s.num_tokens[r] = r % 2 == 1 ? 0 : 64 - r;
  s.edit_inputs = [](std::vector<reference::RankLowLatencyInput>& inputs) {
    for (auto& id : inputs[0].topk_idx) id = -1;  // rank 0 sends nothing, yet has tokens
  };
  expect_exact(s);
}

// B2: every slot of every rank is a hole: counts 0, out all zeros.
TEST_P(LowLatencyRanks, AllHolesEveryRank) {
  LowLatencyScenario s = scenario(ranks(), 2048, 8 * ranks(), 8, 32, ScaleMode::kFp8, 90 + ranks());
  s.routing.hole_fraction = 1.0;
  s.routing.duplicate_fraction = 0.0;
  expect_exact(s);
}

TEST_P(LowLatencyRanks, LogFmtCombine) {
  LowLatencyScenario s = scenario(ranks(), 2048, 8 * ranks(), 8, 64, ScaleMode::kFp8, 100 + ranks());
  s.call.use_logfmt = true;
  expect_exact(s);
}

TEST_P(LowLatencyRanks, ZeroCopyCombine) {
  LowLatencyScenario s = scenario(ranks(), 3072, 8 * ranks(), 4, 32, ScaleMode::kBf16, 110 + ranks());
  s.call.zero_copy = true;
  s.repetitions = 2;  // the zero-copy buffer alternates halves
  expect_exact(s);
}

TEST_P(LowLatencyRanks, AsyncFinish) {
  LowLatencyScenario s = scenario(ranks(), 2048, 8 * ranks(), 8, 64, ScaleMode::kFp8, 120 + ranks());
  s.call.async_finish = true;
  expect_exact(s);
}

TEST_P(LowLatencyRanks, ReceiveHooksWithUnrelatedWork) {
  LowLatencyScenario s = scenario(ranks(), 2048, 8 * ranks(), 8, 64, ScaleMode::kFp8Ue8m0, 130 + ranks());
  s.call.dispatch_hook = true;
  s.call.combine_hook = true;
  expect_exact(s);
}

INSTANTIATE_TEST_SUITE_P(Ranks, LowLatencyRanks, ::testing::Values(1, 2, 4, 8));

// Every hidden size of the issue in every payload mode, two ranks.
class LowLatencyHidden : public ::testing::TestWithParam<int> {};

TEST_P(LowLatencyHidden, AllScaleModes) {
  for (ScaleMode mode : {ScaleMode::kBf16, ScaleMode::kFp8, ScaleMode::kFp8RoundScale, ScaleMode::kFp8Ue8m0}) {
    LowLatencyScenario s = scenario(2, GetParam(), 16, 8, 32, mode, 200 + GetParam() + static_cast<int>(mode));
    s.num_tokens = {32, 19};
    expect_exact(s);
  }
}

INSTANTIATE_TEST_SUITE_P(Hidden, LowLatencyHidden, ::testing::Values(2048, 3072, 4096, 5120, 7168));

// T = kMaxLowLatencyTokens, once: every rank at (or near) the maximum.
TEST(LowLatency, T1024Once) {
  LowLatencyScenario s = scenario(2, 2048, 16, 8, kMaxLowLatencyTokens, ScaleMode::kFp8, 300);
  s.num_tokens = {kMaxLowLatencyTokens, 1000};
  expect_exact(s);
}

// FP8 senders of at least kLlStagedScalesMinTokens tokens (with kLlStagedScalesMinRanks
// ranks) write a token's scales once into each receiver's half and the receivers lay them
// out; the others write them into place. Both kinds in one op, either side of the threshold, in
// fp32 and UE8M0, repeated so both halves are reused.
TEST(LowLatency, StagedAndDirectScalesMix) {
  for (ScaleMode mode : {ScaleMode::kFp8, ScaleMode::kFp8Ue8m0}) {
    LowLatencyScenario s = scenario(8, mode == ScaleMode::kFp8 ? 7168 : 5120, 256, 8, 128, mode, 360);
    s.num_tokens = {32, 31, 128, 0, 33, 1, 64, 32};
    s.repetitions = 2;
    expect_exact(s);
  }
}

// Hidden sizes whose tokens do not split into whole direct items (2560: a half item last)
// or into more items than a block has warps (9216: 9 of 1024 channels), at 8 ranks with
// staged and in-place scales, few and many tokens per rank.
TEST(LowLatency, HiddenOfPartialAndManyDirectItems) {
  for (int hidden : {2560, 9216}) {
    for (ScaleMode mode : {ScaleMode::kFp8, ScaleMode::kFp8Ue8m0, ScaleMode::kBf16}) {
      LowLatencyScenario s = scenario(8, hidden, 64, 8, 64, mode, 370 + hidden / 128 + static_cast<int>(mode));
      s.num_tokens = {32, 1, 64, 0, 33, 2, 40, 32};
      expect_exact(s);
    }
  }
}

// B4: int32 top-k ids are accepted like int64.
TEST(LowLatency, Int32TopkIds) {
  LowLatencyScenario s = scenario(4, 2048, 32, 8, 64, ScaleMode::kFp8, 310);
  s.shape.int32_topk = true;
  expect_exact(s);
}

// The optional stats: cumulative_local_expert_recv_stats adds recv_count per dispatch;
// dispatch_wait_recv_cost_stats stays non-negative.
TEST(LowLatency, StatsAccumulateOverRepetitions) {
  LowLatencyScenario s = scenario(4, 2048, 32, 8, 64, ScaleMode::kFp8, 320);
  s.stats = true;
  s.repetitions = 3;
  expect_exact(s);
}

// A rank alone runs a call without hooks in one launch that waits for no flag and
// signals none (the epoch only moves on); calls with hooks on the same buffer wait for
// their own flags. Alternating them, with T = 1024 (a block ranks several tokens), stays
// exact.
TEST(LowLatency, AloneOneLaunchAndHookCallsAlternate) {
  for (int round = 0; round < 4; ++round) {
    LowLatencyScenario s = scenario(1, 2048, 32, 8, kMaxLowLatencyTokens, ScaleMode::kFp8, 340 + round);
    s.num_tokens = {kMaxLowLatencyTokens - 7 * round};
    s.call.dispatch_hook = round % 2 == 1;
    s.call.combine_hook = round == 2;
    s.repetitions = 2;
    expect_exact(s);
  }
}

// LogFMT over a BF16 dispatch with both receive hooks.
TEST(LowLatency, LogFmtWithHooksOverBf16) {
  LowLatencyScenario s = scenario(4, 4096, 32, 8, 32, ScaleMode::kBf16, 330);
  s.call.use_logfmt = true;
  s.call.dispatch_hook = true;
  s.call.combine_hook = true;
  expect_exact(s);
}

}  // namespace
}  // namespace moe_ep::test
