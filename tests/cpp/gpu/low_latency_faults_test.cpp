// TEST_CASES.md faults for the low-latency calls on in-process ranks of one GPU, with the
// library's test-only fault injection: F1 a rank that skips its call (every peer raises
// Timeout naming itself, the phase and the missing peer, within the bound), F2 ranks
// calling different operations (mismatch naming both), F3 a slow rank inside the bound,
// F4 reset() (and clean_low_latency_buffer()) then exact rounds, F5 prompt destruction
// after a failure, F7 masking with enable_shrink: the others complete, the mask is
// queryable on the device, unmasked results are exact (the masked rank's tokens absent,
// its experts contributing zero), update_mask pre-masks without waiting, clean_mask and
// reset() unmask.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "runtime/cuda_check.hpp"
#include "support/expect_error.hpp"
#include "support/low_latency_io.hpp"

namespace moe_ep::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kRanks = 3;
constexpr int kSkippingRank = 1;
constexpr int kSlowRank = 1;
constexpr std::uint64_t kShortTimeoutMs = 200;
constexpr std::uint64_t kLongTimeoutMs = 2000;


LlShape fault_shape() {
  LlShape s;
  s.num_ranks = kRanks;
  s.hidden = 1024;
  s.num_experts = 24;
  s.num_topk = 6;
  s.max_tokens = 32;
  s.mode = ScaleMode::kFp8;
  return s;
}

const std::vector<int> kTokens = {32, 20, 27};

std::unique_ptr<Cluster> fault_cluster(std::uint64_t timeout_ms, bool enable_shrink = false) {
  return make_ll_cluster(kRanks, ll_buffer_bytes(fault_shape(), false), ll_options(timeout_ms, enable_shrink));
}


enum class Operation { kDispatch, kCombine };
const char* name_of(Operation op) { return op == Operation::kDispatch ? "low_latency_dispatch" : "low_latency_combine"; }

// One operation on one rank, synchronized; recorded device errors raised.
void run_operation(Operation op, LlRankIo& io, Buffer& buffer, cudaStream_t stream) {
  if (op == Operation::kDispatch) {
    io.dispatch(buffer, stream);
  } else {
    io.expert_compute(buffer, stream, {});
    io.combine(buffer, stream);
  }
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  buffer.check_error();
}

// F1 setup: kSkippingRank skips its next call; every rank runs `op` (combine after an
// exact round, with its handle).
TimedResults run_with_one_rank_skipping(Cluster& cluster, LlSet& set, Operation op) {
  if (op == Operation::kCombine) {
    run_ll_round_on_all_ranks(cluster, set);
    EXPECT_EQ(set.count_mismatches("round before the fault"), 0);
  }
  cluster.buffers[kSkippingRank]->set_fault_injection({.skip_calls = 1});
  return timed_on_ranks(cluster, [&](int r) { run_operation(op, set.rank(r), *cluster.buffers[r], cluster.streams[r]); });
}

class LowLatencyFaults : public ::testing::TestWithParam<Operation> {};

// F1: every waiting rank raises Timeout naming itself, the phase and the missing peer,
// after the bound and well before 5x of it; the skipping rank is fine.
TEST_P(LowLatencyFaults, F1RankThatSkipsTimesOutEveryPeer) {
  const Operation op = GetParam();
  auto cluster = fault_cluster(kShortTimeoutMs);
  LlSet set(fault_shape());
  set.set_random_inputs(kTokens, 1);
  const TimedResults results = run_with_one_rank_skipping(*cluster, set, op);
  const double bound = kShortTimeoutMs / 1000.0;
  for (int r = 0; r < kRanks; ++r) {
    const std::string context = std::string(name_of(op)) + ", rank " + std::to_string(r);
    if (r == kSkippingRank) {
      expect_no_error(results.errors[r], context + " (the skipping rank)");
      continue;
    }
    expect_error(caught_as<Timeout>(results.errors[r]),
                 {"rank " + std::to_string(r) + ",", name_of(op), "peer rank " + std::to_string(kSkippingRank)}, context);
    EXPECT_GE(results.seconds[r], 0.9 * bound) << context << ": raised before the bound";
    EXPECT_LT(results.seconds[r], 5 * bound) << context << ": raised too late";
  }
  // The failed buffers refuse calls until reset().
  const auto refused = run_on_ranks_collect(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster->buffers[r]->device()));
    if (r != kSkippingRank) set.rank(r).dispatch(*cluster->buffers[r], cluster->streams[r]);
  });
  for (int r = 0; r < kRanks; ++r) {
    if (r != kSkippingRank) {
      EXPECT_TRUE(refused[r]) << "rank " << r << " accepted a call after the timeout";
    }
  }
}

// F4: after the timeout, reset() on every rank, then exact rounds; then the same after
// clean_low_latency_buffer() as well.
TEST_P(LowLatencyFaults, F4ResetAfterTimeoutRestoresService) {
  auto cluster = fault_cluster(kShortTimeoutMs);
  LlSet set(fault_shape());
  set.set_random_inputs(kTokens, 2);
  const TimedResults results = run_with_one_rank_skipping(*cluster, set, GetParam());
  ASSERT_TRUE(results.errors[0]) << "no timeout was provoked";
  run_on_ranks(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster->buffers[r]->device()));
    cluster->buffers[r]->reset();
  });
  for (int round = 0; round < 2; ++round) {
    set.set_random_inputs(kTokens, 10 + round);
    run_ll_round_on_all_ranks(*cluster, set);
    EXPECT_EQ(set.count_mismatches("round " + std::to_string(round) + " after reset"), 0);
  }
  run_on_ranks(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster->buffers[r]->device()));
    cluster->buffers[r]->clean_low_latency_buffer();
  });
  set.set_random_inputs(kTokens, 12);
  run_ll_round_on_all_ranks(*cluster, set);
  EXPECT_EQ(set.count_mismatches("round after clean_low_latency_buffer"), 0);
}

// F5: destroying the buffers after the failure (no reset) returns promptly on every rank.
TEST_P(LowLatencyFaults, F5DestroyAfterFailureIsPrompt) {
  auto cluster = fault_cluster(kShortTimeoutMs);
  LlSet set(fault_shape());
  set.set_random_inputs(kTokens, 3);
  const TimedResults failure = run_with_one_rank_skipping(*cluster, set, GetParam());
  ASSERT_TRUE(failure.errors[0]) << "no failure was provoked";
  const TimedResults destroyed = timed_on_ranks(*cluster, [&](int r) { cluster->buffers[r].reset(); });
  for (int r = 0; r < kRanks; ++r) {
    expect_no_error(destroyed.errors[r], "destroying rank " + std::to_string(r));
    EXPECT_LT(destroyed.seconds[r], 1.0) << "destroying rank " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Operations, LowLatencyFaults, ::testing::Values(Operation::kDispatch, Operation::kCombine),
                         [](const ::testing::TestParamInfo<Operation>& info) {
                           return info.param == Operation::kDispatch ? std::string("Dispatch") : std::string("Combine");
                         });

// F2: rank 0 dispatches while the others combine (with valid handles): every rank raises
// a mismatch naming both operations; reset() recovers.
TEST(LowLatencyFaultsMismatch, F2RanksCallingDifferentOperations) {
  auto cluster = fault_cluster(kLongTimeoutMs);
  LlSet set(fault_shape());
  set.set_random_inputs(kTokens, 4);
  run_ll_round_on_all_ranks(*cluster, set);
  ASSERT_EQ(set.count_mismatches("round before the mismatch"), 0);
  const TimedResults results = timed_on_ranks(*cluster, [&](int r) {
    run_operation(r == 0 ? Operation::kDispatch : Operation::kCombine, set.rank(r), *cluster->buffers[r],
                  cluster->streams[r]);
  });
  for (int r = 0; r < kRanks; ++r) {
    expect_error(caught_as<InvalidArgument>(results.errors[r]),
                 {"rank " + std::to_string(r) + ",", "mismatch", "low_latency_dispatch", "low_latency_combine"},
                 "rank " + std::to_string(r));
    EXPECT_LT(results.seconds[r], 2.0 * kLongTimeoutMs / 1000.0) << "rank " << r;
  }
  run_on_ranks(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster->buffers[r]->device()));
    cluster->buffers[r]->reset();
  });
  set.set_random_inputs(kTokens, 5);
  run_ll_round_on_all_ranks(*cluster, set);
  EXPECT_EQ(set.count_mismatches("round after the mismatch"), 0);
}

// F3: a rank that sleeps 50 ms before each signal, inside a 2 s bound: every call
// completes exactly, and the peers did wait for it.
TEST(LowLatencyFaultsSlowRank, F3SlowRankInsideTheBoundCompletes) {
  constexpr std::uint64_t kDelayNs = 50'000'000;
  auto cluster = fault_cluster(kLongTimeoutMs);
  LlSet set(fault_shape());
  set.set_random_inputs(kTokens, 6);
  cluster->buffers[kSlowRank]->set_fault_injection({.delay_ns = kDelayNs});
  const TimedResults results = timed_on_ranks(
      *cluster, [&](int r) { set.rank(r).run_round(*cluster->buffers[r], cluster->streams[r]); });
  for (int r = 0; r < kRanks; ++r) {
    expect_no_error(results.errors[r], "rank " + std::to_string(r));
    EXPECT_GE(results.seconds[r], kDelayNs / 1e9) << "rank " << r << " did not wait for the slow rank";
    EXPECT_LT(results.seconds[r], 2.0) << "rank " << r;
  }
  EXPECT_EQ(set.count_mismatches("with a slow rank"), 0);
}

// ---- F7 masking --------------------------------------------------------------------

// Each rank's mask as the device reports it (query on the rank's stream, then a sync).
std::vector<std::vector<int>> query_masks(Cluster& cluster, const std::vector<int>& ranks) {
  std::vector<std::vector<int>> masks(cluster.num_ranks);
  std::vector<DeviceArray<int>> status;
  for (int r = 0; r < cluster.num_ranks; ++r) status.emplace_back(cluster.num_ranks);
  run_on_ranks(cluster.num_ranks, [&](int r) {
    if (std::find(ranks.begin(), ranks.end(), r) == ranks.end()) return;
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
    cluster.buffers[r]->low_latency_query_mask(status[r].view(DType::kInt32, {cluster.num_ranks}), cluster.streams[r]);
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(cluster.streams[r]));
  });
  for (int r : ranks) masks[r] = status[r].download();
  return masks;
}

std::vector<int> mask_of(std::initializer_list<int> masked_ranks) {
  std::vector<int> mask(kRanks, 0);
  for (int r : masked_ranks) mask[r] = 1;
  return mask;
}

const std::vector<int> kUnmaskedRanks = {0, 2};
const std::vector<int> kAllRanks = {0, 1, 2};

// A round without kSkippingRank: it makes its calls with fault injection skipping both
// (they launch nothing), or makes none. `before(r)` runs first on the other ranks.
TimedResults round_without_rank_1(Cluster& cluster, LlSet& set, bool skip_by_injection,
                                  const std::function<void(int)>& before) {
  set.poison_outputs();
  if (skip_by_injection) cluster.buffers[kSkippingRank]->set_fault_injection({.skip_calls = 2});
  return timed_on_ranks(cluster, [&](int r) {
    if (r == kSkippingRank) {
      if (skip_by_injection) set.rank(r).run_round(*cluster.buffers[r], cluster.streams[r]);
      return;
    }
    if (before) before(r);
    set.rank(r).run_round(*cluster.buffers[r], cluster.streams[r]);
  });
}

// F7: with enable_shrink, rank 1 skips its calls: the others' waits for it expire and mask it
// instead of failing; the mask is queryable; unmasked results are exact.
TEST(LowLatencyMasking, F7TimedOutRankIsMaskedOthersComplete) {
  auto cluster = fault_cluster(kShortTimeoutMs, /*enable_shrink=*/true);
  LlSet set(fault_shape());
  set.set_random_inputs(kTokens, 7);
  run_ll_round_on_all_ranks(*cluster, set);
  ASSERT_EQ(set.count_mismatches("round before masking"), 0);
  for (const auto& mask : query_masks(*cluster, kAllRanks)) EXPECT_EQ(mask, mask_of({}));

  set.set_random_inputs(kTokens, 8);
  const TimedResults results = round_without_rank_1(*cluster, set, /*skip_by_injection=*/true, nullptr);
  expect_no_error(results.errors[kSkippingRank], "the skipping rank");
  EXPECT_EQ(set.count_unpoisoned(kSkippingRank), 0) << "the skipped calls wrote outputs";
  for (int r : kUnmaskedRanks) {
    expect_no_error(results.errors[r], "rank " + std::to_string(r));
    EXPECT_LT(results.seconds[r], 5 * kShortTimeoutMs / 1000.0) << "rank " << r;
  }
  const auto masks = query_masks(*cluster, kUnmaskedRanks);
  for (int r : kUnmaskedRanks) EXPECT_EQ(masks[r], mask_of({kSkippingRank})) << "rank " << r;
  set.expect_masked({false, true, false});
  EXPECT_EQ(set.count_mismatches("with rank 1 masked"), 0);

  // Masked stays masked: the next round does not wait for it.
  set.set_random_inputs(kTokens, 9);
  set.expect_masked({false, true, false});
  const TimedResults again = round_without_rank_1(*cluster, set, /*skip_by_injection=*/true, nullptr);
  for (int r : kUnmaskedRanks) {
    expect_no_error(again.errors[r], "rank " + std::to_string(r));
    EXPECT_LT(again.seconds[r], 0.5 * kShortTimeoutMs / 1000.0) << "rank " << r << " waited for a masked rank";
  }
  EXPECT_EQ(set.count_mismatches("second round with rank 1 masked"), 0);

  // reset() (rank 1 is behind by the skipped calls) clears the masks; full rounds are exact.
  run_on_ranks(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster->buffers[r]->device()));
    cluster->buffers[r]->reset();
  });
  for (const auto& mask : query_masks(*cluster, kAllRanks)) EXPECT_EQ(mask, mask_of({}));
  set.set_random_inputs(kTokens, 10);
  run_ll_round_on_all_ranks(*cluster, set);
  EXPECT_EQ(set.count_mismatches("full round after reset"), 0);
}

// F7: ranks that pre-mask rank 1 with low_latency_update_mask complete without waiting
// for it (well inside the 2 s bound), with exact unmasked results.
TEST(LowLatencyMasking, F7UpdateMaskSkipsTheRankWithoutWaiting) {
  auto cluster = fault_cluster(kLongTimeoutMs, /*enable_shrink=*/true);
  LlSet set(fault_shape());
  set.set_random_inputs(kTokens, 11);
  set.expect_masked({false, true, false});
  const TimedResults results = round_without_rank_1(*cluster, set, /*skip_by_injection=*/false, [&](int r) {
    cluster->buffers[r]->low_latency_update_mask(kSkippingRank, true, cluster->streams[r]);
  });
  for (int r : kUnmaskedRanks) {
    expect_no_error(results.errors[r], "rank " + std::to_string(r));
    EXPECT_LT(results.seconds[r], 0.5) << "rank " << r << " waited for a pre-masked rank";
  }
  const auto masks = query_masks(*cluster, kUnmaskedRanks);
  for (int r : kUnmaskedRanks) EXPECT_EQ(masks[r], mask_of({kSkippingRank})) << "rank " << r;
  EXPECT_EQ(set.count_mismatches("rank 1 pre-masked"), 0);
}

// F7: low_latency_clean_mask unmasks: every rank masks rank 1, queries it, cleans, and a
// full round with every rank (rank 1 included) is exact.
TEST(LowLatencyMasking, F7CleanMaskRestoresTheFullGroup) {
  auto cluster = fault_cluster(kLongTimeoutMs, /*enable_shrink=*/true);
  LlSet set(fault_shape());
  set.set_random_inputs(kTokens, 12);
  run_on_ranks(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster->buffers[r]->device()));
    cluster->buffers[r]->low_latency_update_mask(kSkippingRank, true, cluster->streams[r]);
  });
  for (const auto& mask : query_masks(*cluster, kAllRanks)) EXPECT_EQ(mask, mask_of({kSkippingRank}));
  run_on_ranks(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster->buffers[r]->device()));
    cluster->buffers[r]->low_latency_clean_mask(cluster->streams[r]);
  });
  for (const auto& mask : query_masks(*cluster, kAllRanks)) EXPECT_EQ(mask, mask_of({}));
  run_ll_round_on_all_ranks(*cluster, set);
  EXPECT_EQ(set.count_mismatches("full round after clean_mask"), 0);
}

}  // namespace
}  // namespace moe_ep::test
