// The span of one op that every in-process rank enqueued behind a LaunchGate, timed on the
// gate's own stream: a timing event when the gate's open kernel has run (no rank kernel can
// have started before it) and one after that stream has waited for every rank's end
// (events without timing on the ranks' streams), so the span covers the first kernel start
// to the last kernel end (BENCHMARKS.md) with no timing event on a rank's stream. Timing
// events serialize in the GPU's front end: with one before each of 8 streams' kernels, the
// last kernel started 20 us after the gate instead of 8 (H100; the bench's gate
// spread-events row), a cost of the measurement that the op would be charged.
#pragma once
#include <cstdint>
#include <vector>

#include <cuda_runtime_api.h>

#include "bench_util.hpp"
#include "launch_gate.hpp"

namespace moe_ep::bench {

class GatedSpans {
 public:
  GatedSpans(int num_ranks, int num_iterations);  // creates every event up front
  ~GatedSpans();
  GatedSpans(const GatedSpans&) = delete;
  GatedSpans& operator=(const GatedSpans&) = delete;

  // From the rank's thread, once it enqueued the op behind the gate's hold on `stream`.
  void rank_end(int rank, cudaStream_t stream);
  // From one thread once every rank called rank_end for this iteration: opens the gate
  // (epoch as for LaunchGate::open) between the iteration's timing events.
  void open(const LaunchGate& gate, std::uint32_t epoch, int iteration);
  // Microseconds of each iteration from `first_iteration` on (earlier ones: warm-up),
  // after LaunchGate::check() (which waits for the gate's stream).
  std::vector<double> span_us(int first_iteration) const;
  // Their statistics, each span divided by `per` (ops in one span).
  Stats stats(int first_iteration, int per = 1) const;

 private:
  std::vector<cudaEvent_t> rank_ends_;  // [rank], reused by every iteration (no timing)
  std::vector<cudaEvent_t> timing_;     // [iteration][start, stop]
};

}  // namespace moe_ep::bench
