// Internode high-throughput calls on emulated nodes (2x4, 4x2, and 12 ranks as 3x4 and
// 12x1: more ranks than one NVLink domain holds, more nodes than one pass of the kernels'
// per-node loops): the TEST_CASES.md cases
// that differ from one node. More tokens than the RDMA window holds (B6), per-node counts
// that disagree with the routing, a handle without the internode tensors (B10), a rank
// that never calls dispatch or combine (F1) and reset() afterwards (F4), num_worst_tokens
// without a host sync, and many rounds of random, skewed and empty routing with a second
// combine on the same handle (the slots are reused without a dispatch in between). Every
// round that should succeed is compared with the CPU reference.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "runtime/cuda_check.hpp"
#include "support/expect_error.hpp"
#include "support/rank_io.hpp"

namespace moe_ep::test {
namespace {

constexpr int kTokens = 32;                // per rank, what the RDMA windows are sized for
constexpr std::uint64_t kTimeoutMs = 400;
constexpr int kSkippingRank = 1;

struct NodeLayout {
  int num_ranks;
  int ranks_per_node;
};

IoShape shape_of(const NodeLayout& l, int num_worst_tokens = 0) {
  IoShape s;
  s.num_ranks = l.num_ranks;
  s.ranks_per_node = l.ranks_per_node;
  s.hidden = 512;
  s.num_experts = 48;  // divisible by 8 and 12
  s.num_topk = 4;
  s.max_tokens = 2 * kTokens;  // room for a call above the window's capacity
  s.num_worst_tokens = num_worst_tokens;
  return s;
}

class InternodeCalls : public ::testing::TestWithParam<NodeLayout> {
 protected:
  InternodeCalls()
      : shape_(shape_of(GetParam())),
        cluster_(make_cluster(shape_, kTokens, options_with_timeout_ms(kTimeoutMs))),
        io_(shape_) {
    io_.set_random_inputs(tokens_everywhere(shape_, kTokens), 1);
  }

  Buffer& buffer(int r) { return *cluster_->buffers[r]; }
  cudaStream_t stream(int r) { return cluster_->streams[r]; }

  void expect_exact_round(const std::string& context) {
    run_round_on_all_ranks(*cluster_, io_);
    EXPECT_EQ(io_.count_mismatches(context), 0);
  }

  // Every rank but kSkippingRank makes `call`; kSkippingRank skips it. Each other rank
  // must raise Timeout; afterwards reset() restores exact rounds.
  void expect_timeouts_then_recovery(const std::function<void(int rank)>& call,
                                     const std::vector<std::string>& needles) {
    buffer(kSkippingRank).set_fault_injection({.skip_calls = 1});
    const TimedResults results = timed_on_ranks(*cluster_, [&](int r) {
      call(r);
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
      buffer(r).check_error();
    });
    for (int r = 0; r < shape_.num_ranks; ++r) {
      const std::string context = "rank " + std::to_string(r);
      if (r == kSkippingRank) {
        expect_no_error(results.errors[r], context + " (the skipping rank)");
        continue;
      }
      expect_error(caught_as<Timeout>(results.errors[r]), needles, context);
      EXPECT_LT(results.seconds[r], 5 * kTimeoutMs / 1000.0) << context << ": raised too late";
    }
    reset_all_ranks(*cluster_);
    io_.set_random_inputs(tokens_everywhere(shape_, kTokens), 7);
    expect_exact_round("after reset");
  }

  IoShape shape_;
  std::unique_ptr<Cluster> cluster_;
  IoSet io_;
};

TEST_P(InternodeCalls, B6TokensAboveTheRdmaWindowRejectedBeforeAnyLaunch) {
  io_.set_random_inputs(tokens_everywhere(shape_, 2 * kTokens), 2);
  expect_rejected_on_every_rank<InvalidArgument>(
      *cluster_,
      [&](int r) {
        io_.rank(r).layout(buffer(r), stream(r));
        io_.rank(r).dispatch(buffer(r), stream(r));
      },
      {"dispatch", "x has " + std::to_string(2 * kTokens) + " tokens", "num_rdma_bytes=", "internode_size_hint"});
  io_.set_random_inputs(tokens_everywhere(shape_, kTokens), 3);
  expect_exact_round("after the rejected call");
}

TEST_P(InternodeCalls, PerNodeCountsThatDisagreeWithTheRoutingFailClearly) {
  std::vector<DeviceArray<int>> wrong;
  for (int r = 0; r < shape_.num_ranks; ++r) {
    std::vector<int> counts = io_.expected().layouts[r].num_tokens_per_rdma_rank;
    counts[0] += 1;
    wrong.emplace_back(counts);
  }
  std::vector<CaughtError> errors(shape_.num_ranks);
  run_on_ranks(shape_.num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
    io_.rank(r).layout(buffer(r), stream(r));
    DispatchArgs a = io_.rank(r).dispatch_args(stream(r));
    a.num_tokens_per_rdma_rank = wrong[r].view(DType::kInt32, {shape_.num_nodes()});
    errors[r] = error_of<InvalidArgument>([&] { buffer(r).dispatch_notify(a, io_.rank(r).handle); });
  });
  for (int r = 0; r < shape_.num_ranks; ++r) {
    expect_error(errors[r], {"rank " + std::to_string(r), "dispatch.notify", "num_tokens_per_rdma_rank[0] says"},
                 "rank " + std::to_string(r));
  }
  reset_all_ranks(*cluster_);
  expect_exact_round("after reset");
}

TEST_P(InternodeCalls, B10CombineWithoutTheInternodeHandleTensorsRejected) {
  expect_exact_round("first round");
  expect_rejected_on_every_rank<InvalidArgument>(
      *cluster_,
      [&](int r) {
        DispatchHandle handle = io_.rank(r).handle;
        handle.forward_rows = TensorView{};
        buffer(r).combine(io_.rank(r).combine_args(stream(r)), handle);
      },
      {"combine", "handle.forward_rows"});
  expect_exact_round("after the rejected call");
}

// The counting step advanced the transport's signal counts; a copy step refused on the
// host leaves them out of step, so the buffer refuses calls (clearly) until reset().
TEST_P(InternodeCalls, CopyStepRefusedAfterTheCountLeavesTheBufferRefusingUntilReset) {
  expect_rejected_on_every_rank<InvalidArgument>(
      *cluster_,
      [&](int r) {
        RankIo& io = io_.rank(r);
        io.layout(buffer(r), stream(r));
        const DispatchArgs a = io.dispatch_args(stream(r));
        buffer(r).dispatch_notify(a, io.handle);
        buffer(r).dispatch_receive(a, io.handle, DispatchOutputs{});  // a caller that allocated nothing
      },
      {"dispatch", "recv_x"});
  expect_rejected_on_every_rank<std::runtime_error>(
      *cluster_, [&](int r) { io_.rank(r).layout(buffer(r), stream(r)); },
      {"refused after its counting step", "reset()"});
  reset_all_ranks(*cluster_);
  expect_exact_round("after reset");
}

// Shapes are compared within a node by the NVLink publication, and across nodes by each
// forwarder against its homes': here node 0 combines with top-k weights, the others without.
TEST_P(InternodeCalls, CombineShapesThatDifferAcrossNodesFailClearly) {
  expect_exact_round("round with handles to combine with");
  const TimedResults results = timed_on_ranks(*cluster_, [&](int r) {
    CombineArgs a = io_.rank(r).combine_args(stream(r));
    if (r >= shape_.per_node()) {
      a.topk_weights = TensorView{};
      a.combined_topk_weights = TensorView{};
    }
    buffer(r).combine(a, io_.rank(r).handle);
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
    buffer(r).check_error();
  });
  int mismatches = 0;
  for (int r = 0; r < shape_.num_ranks; ++r) {
    const std::string message = message_of(results.errors[r]);
    EXPECT_FALSE(message.empty()) << "rank " << r << " combined despite the mismatch";
    mismatches += message.find("top-k") != std::string::npos ? 1 : 0;
  }
  EXPECT_GT(mismatches, 0) << "no rank named the top-k mismatch";
  reset_all_ranks(*cluster_);
  expect_exact_round("after reset");
}

TEST_P(InternodeCalls, F1F4RankThatNeverCallsDispatch) {
  expect_timeouts_then_recovery(
      [&](int r) {
        io_.rank(r).layout(buffer(r), stream(r));
        io_.rank(r).dispatch(buffer(r), stream(r));
      },
      {"dispatch.notify", "peer rank " + std::to_string(kSkippingRank)});
}

TEST_P(InternodeCalls, F1F4RankThatNeverCallsCombine) {
  expect_exact_round("round with handles to combine with");
  expect_timeouts_then_recovery([&](int r) { io_.rank(r).combine(buffer(r), stream(r)); }, {"timed out"});
}

TEST_P(InternodeCalls, WorstTokensWithoutHostSync) {
  IoSet worst(shape_of(GetParam(), shape_.num_ranks * kTokens));
  worst.set_random_inputs(tokens_everywhere(worst.shape(), kTokens), 4, 0.2, Routing::kSkewed);
  run_round_on_all_ranks(*cluster_, worst);
  EXPECT_EQ(worst.count_mismatches("num_worst_tokens"), 0);
}

TEST_P(InternodeCalls, ManyRoundsOfRandomSkewedAndEmptyRoutingWithRepeatedCombine) {
  const Routing routings[] = {Routing::kUniform, Routing::kSkewed, Routing::kOneRank};
  for (int round = 0; round < 9; ++round) {
    std::vector<int> tokens;
    for (int r = 0; r < shape_.num_ranks; ++r) tokens.push_back((round + r) % 4 == 0 ? 0 : (7 * round + 3 * r) % kTokens + 1);
    io_.set_random_inputs(tokens, 100 + round, round % 3 == 2 ? 1.0 : 0.25, routings[round % 3]);
    const std::string context = "round " + std::to_string(round);
    expect_exact_round(context);
    io_.poison_combine_outputs();  // the second combine must rewrite every combined row
    run_on_ranks(shape_.num_ranks, [&](int r) {
      MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
      io_.rank(r).combine(buffer(r), stream(r));
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
      buffer(r).check_error();
    });
    EXPECT_EQ(io_.count_mismatches(context + ", combined again"), 0);
  }
}

std::string layout_name(const ::testing::TestParamInfo<NodeLayout>& info) {
  return std::to_string(info.param.num_ranks / info.param.ranks_per_node) + "x" +
         std::to_string(info.param.ranks_per_node);
}

INSTANTIATE_TEST_SUITE_P(EmulatedNodes, InternodeCalls, ::testing::Values(NodeLayout{8, 4}, NodeLayout{8, 2}, NodeLayout{12, 4},
                                                                    NodeLayout{12, 1}),
                         layout_name);

}  // namespace
}  // namespace moe_ep::test
