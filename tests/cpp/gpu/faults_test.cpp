// TEST_CASES.md F1..F6 on in-process ranks of one GPU, with the library's test-only fault
// injection: a rank that never calls (every peer times out naming rank, phase and the
// missing peer, within the bound), ranks calling different operations (mismatch), a slow
// rank inside the bound, recovery by reset(), prompt destruction after a failure, and
// 100 create/destroy cycles without memory growth.
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
#include "support/rank_io.hpp"

namespace moe_ep::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kRanks = 3;
constexpr int kTokens = 32;
constexpr int kSkippingRank = 1;  // F1/F4/F5: never calls
constexpr int kSlowRank = 1;      // F3: sleeps before each signal
constexpr std::uint64_t kShortTimeoutMs = 300;


IoShape fault_shape() {
  IoShape s;
  s.num_ranks = kRanks;
  s.hidden = 512;
  s.num_experts = 24;
  s.num_topk = 4;
  s.max_tokens = kTokens;
  return s;
}

std::int64_t buffer_bytes() { return Buffer::intranode_size_hint(64, kRanks); }

// Each rank's exception (if any) and the wall time its body took.

// The operation a fault test runs on every rank: layout + dispatch, or combine (with the
// handle of an earlier round); each synchronizes and raises recorded errors.
enum class Operation { kDispatch, kCombine };

const char* name_of(Operation op) { return op == Operation::kDispatch ? "dispatch" : "combine"; }
const char* phase_of(Operation op) { return op == Operation::kDispatch ? "dispatch.notify" : "combine.publish"; }

void run_operation(Operation op, RankIo& io, Buffer& buffer, cudaStream_t stream) {
  if (op == Operation::kDispatch) {
    io.layout(buffer, stream);
    io.dispatch(buffer, stream);
  } else {
    io.combine(buffer, stream);
  }
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  buffer.check_error();
}

// F1 setup: kSkippingRank skips its next collective call; every rank runs `op`.
TimedResults run_with_one_rank_skipping(Cluster& cluster, IoSet& io, Operation op) {
  if (op == Operation::kCombine) run_round_on_all_ranks(cluster, io);  // handles to combine with
  cluster.buffers[kSkippingRank]->set_fault_injection({.skip_calls = 1});
  return timed_on_ranks(cluster,
                        [&](int r) { run_operation(op, io.rank(r), *cluster.buffers[r], cluster.streams[r]); });
}

// F1 expectations: the skipping rank is fine; every other rank raises Timeout naming
// itself, the phase and the missing peer, after the bound and well before 5x of it.
void expect_timeouts_naming_the_missing_rank(const TimedResults& results, Operation op) {
  const double bound = kShortTimeoutMs / 1000.0;
  for (int r = 0; r < kRanks; ++r) {
    const std::string context = std::string(name_of(op)) + ", rank " + std::to_string(r);
    if (r == kSkippingRank) {
      expect_no_error(results.errors[r], context + " (the skipping rank)");
      continue;
    }
    expect_error(caught_as<Timeout>(results.errors[r]),
                 {"rank " + std::to_string(r) + ",", phase_of(op), "peer rank " + std::to_string(kSkippingRank)},
                 context);
    EXPECT_GE(results.seconds[r], 0.9 * bound) << context << ": raised before the bound";
    EXPECT_LT(results.seconds[r], 5 * bound) << context << ": raised too late";
  }
}

class Faults : public ::testing::TestWithParam<Operation> {};

// F1: one rank never calls dispatch (or combine).
TEST_P(Faults, F1RankThatNeverCallsTimesOutEveryPeer) {
  Cluster cluster(kRanks, buffer_bytes(), options_with_timeout_ms(kShortTimeoutMs));
  IoSet io(fault_shape());
  io.set_random_inputs(tokens_everywhere(io.shape(), kTokens), 1);
  expect_timeouts_naming_the_missing_rank(run_with_one_rank_skipping(cluster, io, GetParam()), GetParam());
}

// F4: after the timeout, reset() on every rank, then normal calls work and are exact.
TEST_P(Faults, F4ResetAfterTimeoutRestoresService) {
  Cluster cluster(kRanks, buffer_bytes(), options_with_timeout_ms(kShortTimeoutMs));
  IoSet io(fault_shape());
  io.set_random_inputs(tokens_everywhere(io.shape(), kTokens), 2);
  const TimedResults results = run_with_one_rank_skipping(cluster, io, GetParam());
  ASSERT_TRUE(results.errors[0]) << "no timeout was provoked";
  reset_all_ranks(cluster);
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(cluster.buffers[r]->generation(), 1u);
  for (int round = 0; round < 2; ++round) {
    io.set_random_inputs(tokens_everywhere(io.shape(), kTokens), 10 + round);
    run_round_on_all_ranks(cluster, io);
    EXPECT_EQ(io.count_mismatches("round " + std::to_string(round) + " after reset"), 0);
  }
}

// F5: destroying the buffers after the failure (no reset) returns promptly on every rank.
TEST_P(Faults, F5DestroyAfterFailureIsPrompt) {
  Cluster cluster(kRanks, buffer_bytes(), options_with_timeout_ms(kShortTimeoutMs));
  IoSet io(fault_shape());
  io.set_random_inputs(tokens_everywhere(io.shape(), kTokens), 3);
  const TimedResults failure = run_with_one_rank_skipping(cluster, io, GetParam());
  ASSERT_TRUE(failure.errors[0]) << "no failure was provoked";
  const TimedResults destroyed = timed_on_ranks(cluster, [&](int r) { cluster.buffers[r].reset(); });
  for (int r = 0; r < kRanks; ++r) {
    expect_no_error(destroyed.errors[r], "destroying rank " + std::to_string(r));
    EXPECT_LT(destroyed.seconds[r], 1.0) << "destroying rank " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Operations, Faults, ::testing::Values(Operation::kDispatch, Operation::kCombine),
                         [](const ::testing::TestParamInfo<Operation>& info) {
                           return info.param == Operation::kDispatch ? std::string("Dispatch")
                                                                     : std::string("Combine");
                         });

// F2: rank 0 calls dispatch while the others combine (with valid handles): every rank
// raises a mismatch naming both operations; reset() recovers.
TEST(FaultsMismatch, F2RanksCallingDifferentOperations) {
  Cluster cluster(kRanks, buffer_bytes(), options_with_timeout_ms(2000));
  IoSet io(fault_shape());
  io.set_random_inputs(tokens_everywhere(io.shape(), kTokens), 4);
  run_round_on_all_ranks(cluster, io);
  const TimedResults results = timed_on_ranks(cluster, [&](int r) {
    run_operation(r == 0 ? Operation::kDispatch : Operation::kCombine, io.rank(r), *cluster.buffers[r],
                  cluster.streams[r]);
  });
  for (int r = 0; r < kRanks; ++r) {
    expect_error(caught_as<InvalidArgument>(results.errors[r]),
                 {"rank " + std::to_string(r) + ",", "mismatch", "called dispatch", "called combine"},
                 "rank " + std::to_string(r));
  }
  reset_all_ranks(cluster);
  io.set_random_inputs(tokens_everywhere(io.shape(), kTokens), 5);
  run_round_on_all_ranks(cluster, io);
  EXPECT_EQ(io.count_mismatches("round after the mismatch"), 0);
}

// F3: a rank that sleeps 50 ms before each signal, inside a 2 s bound: every call
// completes, exactly, and the peers did wait for it.
TEST(FaultsSlowRank, F3SlowRankInsideTheBoundCompletes) {
  constexpr std::uint64_t kDelayNs = 50'000'000;
  Cluster cluster(kRanks, buffer_bytes(), options_with_timeout_ms(2000));
  IoSet io(fault_shape());
  io.set_random_inputs(tokens_everywhere(io.shape(), kTokens), 6);
  cluster.buffers[kSlowRank]->set_fault_injection({.delay_ns = kDelayNs});
  const TimedResults results =
      timed_on_ranks(cluster, [&](int r) { io.rank(r).run_round(*cluster.buffers[r], cluster.streams[r]); });
  for (int r = 0; r < kRanks; ++r) {
    expect_no_error(results.errors[r], "rank " + std::to_string(r));
    EXPECT_GE(results.seconds[r], kDelayNs / 1e9) << "rank " << r << " did not wait for the slow rank";
    EXPECT_LT(results.seconds[r], 2.0) << "rank " << r;
  }
  EXPECT_EQ(io.count_mismatches("with a slow rank"), 0);
}

// F6: 100 create/destroy cycles of a 2-rank cluster: bounded time, no device memory growth.
TEST(FaultsLifecycle, F6CreateDestroyHundredTimes) {
  constexpr int kCycles = 100, kClusterRanks = 2;
  constexpr std::size_t kSlackBytes = std::size_t{32} << 20;
  const std::int64_t bytes = Buffer::intranode_size_hint(256, kClusterRanks);
  { Cluster warm_up(kClusterRanks, bytes); }  // one-time lazy allocations happen here
  MOE_EP_CUDA_CHECK(cudaDeviceSynchronize());
  std::size_t free_before = 0, free_after = 0, total = 0;
  MOE_EP_CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
  const auto start = Clock::now();
  double slowest = 0.0;
  for (int i = 0; i < kCycles; ++i) {
    const auto cycle_start = Clock::now();
    { Cluster cluster(kClusterRanks, bytes); }
    slowest = std::max(slowest, seconds_since(cycle_start));
  }
  const double elapsed = seconds_since(start);
  MOE_EP_CUDA_CHECK(cudaDeviceSynchronize());
  MOE_EP_CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
  EXPECT_LT(elapsed, 30.0) << kCycles << " cycles";
  EXPECT_LT(slowest, 2.0) << "slowest cycle";
  EXPECT_GE(free_after + kSlackBytes, free_before)
      << "device memory shrank by " << (free_before - free_after) << " bytes over " << kCycles << " cycles";
}

}  // namespace
}  // namespace moe_ep::test
