// Timed rounds of low-latency calls on in-process ranks sharing one GPU. A round times
// four things, each started on every rank together behind a LaunchGate (device time only:
// from the gate's release to the last rank's end, GatedSpans) and followed by a stream
// sync and a barrier:
// the dispatch alone (L2 flushed before), the combine alone, a dispatch + combine chained
// (L2 flushed before: a cold pair), and kLlPeriodPairs such pairs back to back (L2 flushed
// before the first; every pair on the round's inputs, as a decode step's layers follow
// each other: the period of a pair). Input sets rotate by round.
// The same rounds run eagerly or in CUDA graphs: a graph per rank, input set and timed op
// holds the gate's hold, the op's calls and the end stamp, so its kernels follow each other
// as in an engine's captured decode step (programmatic edges between the graph's kernels),
// and the graph's own launch, like an eager call's host launch, comes before the gate opens.
#pragma once
#include <cstdint>
#include <functional>

#include <cuda_runtime_api.h>

#include "gated_spans.hpp"
#include "support/rank_threads.hpp"

namespace moe_ep::bench {

// Enqueues one rank's call for input set `set` on `stream` (from the rank's thread).
using LlEnqueue = std::function<void(int rank, int set, cudaStream_t stream)>;
struct LlOps {
  LlEnqueue dispatch, combine;
};

// The timed ops of a round, in order.
enum class LlTimedOp : int { kDispatch = 0, kCombine = 1, kPair = 2, kPeriod = 3 };
inline constexpr int kLlTimedOps = 4;
inline constexpr LlTimedOp kLlLastTimedOp = LlTimedOp::kPeriod;
inline constexpr int kLlPeriodPairs = 8;  // pairs chained in a kPeriod op

struct LlRoundSpans {
  LlRoundSpans(int num_ranks, int num_rounds)
      : dispatch(num_ranks, num_rounds),
        combine(num_ranks, num_rounds),
        pair(num_ranks, num_rounds),
        period(num_ranks, num_rounds) {}
  GatedSpans& of(LlTimedOp op) {
    switch (op) {
      case LlTimedOp::kDispatch: return dispatch;
      case LlTimedOp::kCombine: return combine;
      case LlTimedOp::kPair: return pair;
      case LlTimedOp::kPeriod: break;
    }
    return period;
  }
  GatedSpans dispatch, combine, pair, period;  // period: kLlPeriodPairs pairs
};

// Called on rank 0's thread once every rank's stream finished a timed op, with the global
// timer (ns) when its gate opened.
using LlAfterOp = std::function<void(LlTimedOp op, int round, std::uint64_t opened_ns)>;

enum class LlLaunch { kEager, kGraph };

// Runs num_rounds rounds (spans made for as many) on every rank's thread; a rank that
// fails leaves the barrier so its peers end too (their waits expire), then it rethrows.
void time_ll_rounds(test::Cluster& cluster, int num_sets, int num_rounds, const LlOps& ops, LlLaunch launch,
                    LlRoundSpans& spans, const LlAfterOp& after_op = {});

}  // namespace moe_ep::bench
