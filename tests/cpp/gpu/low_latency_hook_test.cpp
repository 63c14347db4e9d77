// Receive hooks of the low-latency calls (return_recv_hook): the call only sends, nothing
// is received until the hook runs (outputs still poisoned after a stream sync), an
// unrelated kernel may run in between, results are exact; the same for combine; S6 two
// micro-batches with both hooks pending at once; a third call while two hooks pend is
// rejected (InvalidArgument, nothing launched) and the buffer stays usable; a hook runs
// once; a hook from before reset() is void.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "runtime/cuda_check.hpp"
#include "support/expect_error.hpp"
#include "support/low_latency_io.hpp"

namespace moe_ep::test {
namespace {

constexpr int kRanks = 3;
constexpr std::uint64_t kTimeoutMs = 2000;

LlShape shape_a() {
  LlShape s;
  s.num_ranks = kRanks;
  s.hidden = 2048;
  s.num_experts = 24;
  s.num_topk = 8;
  s.max_tokens = 64;
  s.mode = ScaleMode::kFp8;
  return s;
}

LlShape shape_b() {
  LlShape s = shape_a();
  s.hidden = 1024;
  s.max_tokens = 32;
  s.num_topk = 4;
  s.mode = ScaleMode::kBf16;
  return s;
}

const std::vector<int> kTokensA = {64, 30, 0};
const std::vector<int> kTokensB = {5, 32, 17};

LlCallOptions with_hooks(bool dispatch_hook, bool combine_hook) {
  LlCallOptions o;
  o.dispatch_hook = dispatch_hook;
  o.combine_hook = combine_hook;
  return o;
}

// Bytes of the receive outputs (recv_x, scales, recv_count, src_info, layout_range) that
// are no longer poison: a receive that ran before its hook writes them.
std::int64_t written_receive_bytes(const LlRankOutputs& o) {
  std::int64_t n = 0;
  const auto count = [&](const void* data, std::size_t bytes) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    for (std::size_t i = 0; i < bytes; ++i) n += p[i] != kPoisonByte ? 1 : 0;
  };
  count(o.recv_x.data(), o.recv_x.size());
  count(o.recv_scales.data(), o.recv_scales.size());
  count(o.recv_count.data(), o.recv_count.size() * sizeof(int));
  count(o.src_info.data(), o.src_info.size() * sizeof(int));
  count(o.layout_range.data(), o.layout_range.size() * sizeof(std::int64_t));
  return n;
}

std::int64_t written_out_bytes(const LlRankOutputs& o) {
  std::int64_t n = 0;
  const auto* p = reinterpret_cast<const std::uint8_t*>(o.out.data());
  for (std::size_t i = 0; i < o.out.size() * 2; ++i) n += p[i] != kPoisonByte ? 1 : 0;
  return n;
}

class LowLatencyHooks : public ::testing::Test {
 protected:
  LowLatencyHooks()
      : cluster_(make_ll_cluster(kRanks, ll_buffer_bytes(shape_a(), false), ll_options(kTimeoutMs))),
        a_(shape_a()),
        b_(shape_b()) {
    a_.set_random_inputs(kTokensA, 1);
    b_.set_random_inputs(kTokensB, 2, {.hole_fraction = 0.2, .duplicate_fraction = 0.1});
  }

  Buffer& buffer(int r) { return *cluster_->buffers[r]; }
  cudaStream_t stream(int r) { return cluster_->streams[r]; }
  void on_ranks(const std::function<void(int)>& body) {
    run_on_ranks(kRanks, [&](int r) {
      MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
      body(r);
    });
  }
  void sync_and_check(int r) {
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
    buffer(r).check_error();
  }

  std::unique_ptr<Cluster> cluster_;
  LlSet a_, b_;
};

// Dispatch with a hook: after the send and a stream sync nothing was received; an
// unrelated kernel, then the hook, then the fake expert and a plain combine: exact.
TEST_F(LowLatencyHooks, DispatchReceivesOnlyWhenTheHookRuns) {
  const LlCallOptions options = with_hooks(true, false);
  std::vector<LowLatencyCall> calls(kRanks);
  on_ranks([&](int r) {
    calls[r] = a_.rank(r).dispatch(buffer(r), stream(r), options);
    if (!calls[r].hook.pending()) throw std::runtime_error("rank " + std::to_string(r) + ": no pending hook");
    sync_and_check(r);
  });
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(written_receive_bytes(a_.rank(r).download()), 0) << "rank " << r << " received before its hook";
  }
  on_ranks([&](int r) {
    a_.rank(r).complete(calls[r], true, stream(r), options);  // unrelated kernel + hook
    a_.rank(r).expert_compute(buffer(r), stream(r), options);
    a_.rank(r).complete(a_.rank(r).combine(buffer(r), stream(r), options), false, stream(r), options);
    sync_and_check(r);
  });
  EXPECT_EQ(a_.count_mismatches("dispatch hook"), 0);
  for (int r = 0; r < kRanks; ++r) EXPECT_TRUE(a_.rank(r).unrelated_work_seen()) << "rank " << r;
}

// Combine with a hook: after the send and a sync, out is untouched; then the hook.
TEST_F(LowLatencyHooks, CombineReceivesOnlyWhenTheHookRuns) {
  const LlCallOptions options = with_hooks(false, true);
  std::vector<LowLatencyCall> calls(kRanks);
  on_ranks([&](int r) {
    a_.rank(r).complete(a_.rank(r).dispatch(buffer(r), stream(r), options), false, stream(r), options);
    a_.rank(r).expert_compute(buffer(r), stream(r), options);
    calls[r] = a_.rank(r).combine(buffer(r), stream(r), options);
    if (!calls[r].hook.pending()) throw std::runtime_error("rank " + std::to_string(r) + ": no pending hook");
    sync_and_check(r);
  });
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(written_out_bytes(a_.rank(r).download()), 0) << "rank " << r << " combined before its hook";
  }
  on_ranks([&](int r) {
    a_.rank(r).complete(calls[r], true, stream(r), options);
    sync_and_check(r);
  });
  EXPECT_EQ(a_.count_mismatches("combine hook"), 0);
}

// S6: dispatch A (hook), dispatch B (hook), hook A, hook B, both experts, combine A
// (hook), combine B (hook), hook A, hook B; one sync at the end. Three rounds.
TEST_F(LowLatencyHooks, S6TwoMicroBatchesWithBothHooksPending) {
  const LlCallOptions options = with_hooks(true, true);
  for (int round = 0; round < 3; ++round) {
    a_.set_random_inputs(kTokensA, 10 + round);
    b_.set_random_inputs(kTokensB, 20 + round, {.hole_fraction = 0.2, .duplicate_fraction = 0.1});
    on_ranks([&](int r) {
      LlRankIo& a = a_.rank(r);
      LlRankIo& b = b_.rank(r);
      const LowLatencyCall dispatch_a = a.dispatch(buffer(r), stream(r), options);
      const LowLatencyCall dispatch_b = b.dispatch(buffer(r), stream(r), options);
      a.complete(dispatch_a, true, stream(r), options);
      b.complete(dispatch_b, true, stream(r), options);
      a.expert_compute(buffer(r), stream(r), options);
      b.expert_compute(buffer(r), stream(r), options);
      const LowLatencyCall combine_a = a.combine(buffer(r), stream(r), options);
      const LowLatencyCall combine_b = b.combine(buffer(r), stream(r), options);
      a.complete(combine_a, true, stream(r), options);
      b.complete(combine_b, true, stream(r), options);
      sync_and_check(r);
    });
    EXPECT_EQ(a_.count_mismatches("micro-batch A, round " + std::to_string(round)), 0);
    EXPECT_EQ(b_.count_mismatches("micro-batch B, round " + std::to_string(round)), 0);
  }
}

// A third low-latency call while two hooks pend is rejected before any launch (a
// dispatch, and A's combine); after both hooks the micro-batches complete exactly.
TEST_F(LowLatencyHooks, ThirdCallWhileTwoHooksPendRejected) {
  LlSet c(shape_a());
  c.set_random_inputs(kTokensA, 3);
  const LlCallOptions options = with_hooks(true, false);
  std::vector<CaughtError> third_dispatch(kRanks), early_combine(kRanks);
  on_ranks([&](int r) {
    const LowLatencyCall dispatch_a = a_.rank(r).dispatch(buffer(r), stream(r), options);
    const LowLatencyCall dispatch_b = b_.rank(r).dispatch(buffer(r), stream(r), options);
    third_dispatch[r] = error_of<InvalidArgument>([&] { c.rank(r).dispatch(buffer(r), stream(r), {}); });
    early_combine[r] = error_of<InvalidArgument>([&] { a_.rank(r).combine(buffer(r), stream(r), {}); });
    a_.rank(r).complete(dispatch_a, true, stream(r), options);
    b_.rank(r).complete(dispatch_b, true, stream(r), options);
    for (LlSet* set : {&a_, &b_}) {
      set->rank(r).expert_compute(buffer(r), stream(r), {});
      set->rank(r).complete(set->rank(r).combine(buffer(r), stream(r), {}), false, stream(r), {});
    }
    sync_and_check(r);
  });
  for (int r = 0; r < kRanks; ++r) {
    const std::string rank = "rank " + std::to_string(r);
    expect_error(third_dispatch[r], {"low_latency_dispatch", "hook"}, rank + " third dispatch");
    expect_error(early_combine[r], {"low_latency_combine", "hook"}, rank + " combine before the hooks");
    EXPECT_EQ(c.count_unpoisoned(r), 0) << rank << ": the rejected dispatch wrote its outputs";
  }
  EXPECT_EQ(a_.count_mismatches("micro-batch A after the rejections"), 0);
  EXPECT_EQ(b_.count_mismatches("micro-batch B after the rejections"), 0);
  // The buffer keeps working: the third batch now goes through.
  run_ll_round_on_all_ranks(*cluster_, c);
  EXPECT_EQ(c.count_mismatches("third batch afterwards"), 0);
}

// A hook runs once: a second call raises InvalidArgument and launches nothing.
TEST_F(LowLatencyHooks, HookCalledTwiceRejected) {
  const LlCallOptions options = with_hooks(true, false);
  std::vector<CaughtError> second(kRanks);
  on_ranks([&](int r) {
    const LowLatencyCall call = a_.rank(r).dispatch(buffer(r), stream(r), options);
    a_.rank(r).complete(call, true, stream(r), options);
    LowLatencyHook again = call.hook;
    second[r] = error_of<InvalidArgument>([&] { again(); });
    a_.rank(r).expert_compute(buffer(r), stream(r), {});
    a_.rank(r).combine(buffer(r), stream(r), {});
    sync_and_check(r);
  });
  for (int r = 0; r < kRanks; ++r) expect_error(second[r], {"hook"}, "rank " + std::to_string(r));
  EXPECT_EQ(a_.count_mismatches("after the second hook call"), 0);
}

// A hook from before reset() is void (InvalidArgument), and the buffer works after.
TEST_F(LowLatencyHooks, HookFromBeforeResetIsVoid) {
  const LlCallOptions options = with_hooks(true, false);
  std::vector<LowLatencyCall> calls(kRanks);
  on_ranks([&](int r) {
    calls[r] = a_.rank(r).dispatch(buffer(r), stream(r), options);
    sync_and_check(r);
  });
  on_ranks([&](int r) { buffer(r).reset(); });
  std::vector<CaughtError> stale(kRanks);
  on_ranks([&](int r) {
    LowLatencyHook hook = calls[r].hook;
    stale[r] = error_of<InvalidArgument>([&] { hook(); });
  });
  for (int r = 0; r < kRanks; ++r) expect_error(stale[r], {"reset"}, "rank " + std::to_string(r));
  a_.set_random_inputs(kTokensA, 4);
  run_ll_round_on_all_ranks(*cluster_, a_, with_hooks(true, true));
  EXPECT_EQ(a_.count_mismatches("round after the reset"), 0);
}

}  // namespace
}  // namespace moe_ep::test
