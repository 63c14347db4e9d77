// Gated, timed rounds and their CUDA-graph variant (see ll_rounds.hpp).
#include "ll_rounds.hpp"

#include <barrier>
#include <cstdint>

#include "l2_flush.hpp"
#include "launch_gate.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {
namespace {

// kLlPeriodPairs dispatch + combine pairs, chained on `stream`.
void enqueue_pairs(const LlOps& ops, int r, int set, cudaStream_t stream) {
  for (int i = 0; i < kLlPeriodPairs; ++i) {
    ops.dispatch(r, set, stream);
    ops.combine(r, set, stream);
  }
}

}  // namespace

void time_ll_rounds(test::Cluster& cluster, int num_sets, int num_rounds, const LlOps& ops, LlRoundSpans& spans,
                    const LlAfterOp& after_op) {
  const int num_ranks = cluster.num_ranks;
  const L2Flush flush;  // allocated before any collective
  const LaunchGate gate;
  std::barrier sync(num_ranks);
  test::run_on_ranks(num_ranks, [&](int r) {
    Buffer& buffer = *cluster.buffers[r];
    cudaStream_t stream = cluster.streams[r];
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer.device()));
    std::uint32_t epoch = 0;  // the same sequence on every rank
    // One timed op: every rank enqueues it behind the gate; rank 0 opens the gate once all
    // have (and its L2 flush has finished); all wait for their streams and meet again
    // before the next op (or flush) starts.
    auto timed = [&](LlTimedOp op, GatedSpans& op_spans, int round, bool flush_l2,
                     const std::function<void()>& enqueue) {
      if (flush_l2 && r == 0) {
        flush.enqueue(stream);
        MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
      }
      gate.hold(stream, ++epoch);
      enqueue();
      op_spans.rank_end(r, round, stream);
      sync.arrive_and_wait();
      if (r == 0) op_spans.open(gate, epoch, round);
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
      buffer.check_error();
      sync.arrive_and_wait();
      if (after_op) {  // peers start the next op once the hook has read their state
        if (r == 0) after_op(op, round, gate.last_opened_ns());
        sync.arrive_and_wait();
      }
    };
    try {
      for (int round = 0; round < num_rounds; ++round) {
        const int set = round % num_sets;
        timed(LlTimedOp::kDispatch, spans.dispatch, round, true, [&] { ops.dispatch(r, set, stream); });
        timed(LlTimedOp::kCombine, spans.combine, round, false, [&] { ops.combine(r, set, stream); });
        timed(LlTimedOp::kPair, spans.pair, round, true, [&] {
          ops.dispatch(r, set, stream);
          ops.combine(r, set, stream);
        });
        timed(LlTimedOp::kPeriod, spans.period, round, true, [&] { enqueue_pairs(ops, r, set, stream); });
        if (ops.step) timed(LlTimedOp::kStep, spans.step, round, true, [&] { ops.step(r, set, stream); });
      }
    } catch (...) {
      sync.arrive_and_drop();
      throw;
    }
  });
  gate.check();
}

std::vector<std::vector<LlGraphs>> capture_ll_graphs(test::Cluster& cluster, int num_sets, const LlOps& ops) {
  std::vector<std::vector<LlGraphs>> graphs(cluster.num_ranks);
  for (auto& per_rank : graphs) per_rank.resize(num_sets);
  test::run_on_ranks(cluster.num_ranks, [&](int r) {
    cudaStream_t stream = cluster.streams[r];
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
    for (int set = 0; set < num_sets; ++set) {
      graphs[r][set].dispatch.capture(stream, [&] { ops.dispatch(r, set, stream); });
      graphs[r][set].combine.capture(stream, [&] { ops.combine(r, set, stream); });
      graphs[r][set].step.capture(stream, [&] { enqueue_pairs(ops, r, set, stream); });
    }
  });
  return graphs;
}

LlOps replay_ops(const std::vector<std::vector<LlGraphs>>& graphs) {
  return LlOps{[&graphs](int r, int set, cudaStream_t stream) { graphs[r][set].dispatch.launch(stream); },
               [&graphs](int r, int set, cudaStream_t stream) { graphs[r][set].combine.launch(stream); },
               [&graphs](int r, int set, cudaStream_t stream) { graphs[r][set].step.launch(stream); }};
}

}  // namespace moe_ep::bench
