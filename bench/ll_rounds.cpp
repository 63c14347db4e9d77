// Gated, timed rounds, eager or in CUDA graphs (see ll_rounds.hpp).
#include "ll_rounds.hpp"

#include <barrier>
#include <cstdint>
#include <vector>

#include "l2_flush.hpp"
#include "launch_gate.hpp"
#include "runtime/cuda_check.hpp"
#include "support/captured_graph.hpp"

namespace moe_ep::bench {
namespace {

constexpr LlTimedOp kTimedOps[] = {LlTimedOp::kDispatch, LlTimedOp::kCombine, LlTimedOp::kPair, LlTimedOp::kPeriod};

// The combine alone runs on what the dispatch before it left in L2; every other op cold.
bool flushed_before(LlTimedOp op) { return op != LlTimedOp::kCombine; }

// The op's calls on `stream`.
void enqueue_calls(const LlOps& ops, LlTimedOp op, int r, int set, cudaStream_t stream) {
  if (op == LlTimedOp::kCombine) return ops.combine(r, set, stream);
  const int pairs = op == LlTimedOp::kPeriod ? kLlPeriodPairs : 1;
  for (int i = 0; i < pairs; ++i) {
    ops.dispatch(r, set, stream);
    if (op != LlTimedOp::kDispatch) ops.combine(r, set, stream);
  }
}

}  // namespace

void time_ll_rounds(test::Cluster& cluster, int num_sets, int num_rounds, const LlOps& ops, LlLaunch launch,
                    LlRoundSpans& spans, const LlAfterOp& after_op) {
  const int num_ranks = cluster.num_ranks;
  const L2Flush flush;  // allocated before any collective
  const LaunchGate gate(num_ranks);
  std::barrier sync(num_ranks);
  // What a rank enqueues for one timed op: the gate's hold, the calls, the end stamp.
  auto gated = [&](LlTimedOp op, int r, int set, cudaStream_t stream) {
    spans.of(op).enqueue_gated(gate, r, stream, [&] { enqueue_calls(ops, op, r, set, stream); });
  };
  test::run_on_ranks(num_ranks, [&](int r) {
    Buffer& buffer = *cluster.buffers[r];
    cudaStream_t stream = cluster.streams[r];
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer.device()));
    std::vector<test::CapturedGraph> graphs;  // [set * kLlTimedOps + op]
    std::uint32_t epoch = 0;  // the same sequence on every rank
    // One timed op: every rank enqueues it; rank 0 opens the gate once all have (and its L2
    // flush has finished); all wait for their streams and meet again before the next op
    // (or flush) starts.
    auto timed = [&](LlTimedOp op, int round) {
      const int set = round % num_sets;
      if (flushed_before(op) && r == 0) {
        flush.enqueue(stream);
        MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
      }
      if (launch == LlLaunch::kGraph) {
        graphs[set * kLlTimedOps + static_cast<int>(op)].launch(stream);
      } else {
        gated(op, r, set, stream);
      }
      ++epoch;
      sync.arrive_and_wait();
      if (r == 0) spans.of(op).open(gate, epoch, round);
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
      buffer.check_error();
      sync.arrive_and_wait();
      if (after_op) {  // peers start the next op once the hook has read their state
        if (r == 0) after_op(op, round, gate.last_opened_ns());
        sync.arrive_and_wait();
      }
    };
    try {
      if (launch == LlLaunch::kGraph) {
        graphs.reserve(static_cast<std::size_t>(num_sets) * kLlTimedOps);
        for (int set = 0; set < num_sets; ++set) {
          for (LlTimedOp op : kTimedOps) {
            graphs.emplace_back().capture(stream, [&] { gated(op, r, set, stream); });
          }
        }
        sync.arrive_and_wait();  // no rank holds its stream at the gate while a peer instantiates
      }
      for (int round = 0; round < num_rounds; ++round) {
        for (LlTimedOp op : kTimedOps) timed(op, round);
      }
    } catch (...) {
      sync.arrive_and_drop();
      throw;
    }
  });
  gate.check();
}

}  // namespace moe_ep::bench
