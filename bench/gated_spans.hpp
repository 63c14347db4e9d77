// The span of one op that every in-process rank enqueued behind a LaunchGate, from the
// gate's release to the last rank's end, on the GPU's global timer: the open kernel stamps
// the release just before it lets the ranks go (no rank kernel can start earlier), and an
// end stamp kernel after each rank's op, launched as a programmatic dependent of its last
// kernel (ll_launch.hpp), stamps as soon as that kernel has completed. So the span bounds
// the first kernel start to the last kernel end (BENCHMARKS.md) from above by little: the
// hold's exit before the first kernel and one stamp after the last (the gated-empty floor
// row). CUDA events cannot do this here: a timing event before each of 8 streams' kernels
// serializes them in the front end (H100: the last started 14 us after the first instead
// of 4; the gate spread-events and start-spread rows), and one recorded on the gate's
// stream is late by the open kernel's launch (about 5 us) if recorded before it, and may
// come after the first rank kernel started if recorded after it.
// Each rank counts its stamps on the device (its n-th stamp is iteration n), so a stamp
// captured in a CUDA graph with the gate's hold and the op lands in the next iteration at
// every replay.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include <cuda_runtime_api.h>

#include "bench_util.hpp"
#include "launch_gate.hpp"
#include "support/device_array.hpp"

namespace moe_ep::bench {

class GatedSpans {
 public:
  GatedSpans(int num_ranks, int num_iterations);

  // From the rank's thread, one rank's timed op on `stream`: the gate's hold (the rank is its
  // holder), what `work` enqueues, then the end stamp of the rank's next iteration (each rank
  // enqueues once per iteration). Capturable in a CUDA graph.
  void enqueue_gated(const LaunchGate& gate, int rank, cudaStream_t stream, const std::function<void()>& work);
  // From one thread once every rank called enqueue_gated for this iteration: opens the gate
  // (epoch as for LaunchGate::open), stamping the release.
  void open(const LaunchGate& gate, std::uint32_t epoch, int iteration);
  // Microseconds of each iteration from `first_iteration` on (earlier ones: warm-up),
  // after LaunchGate::check() and every rank stream's synchronization. Throws unless every
  // rank stamped every iteration.
  std::vector<double> span_us(int first_iteration) const;
  // Their statistics, each span divided by `per` (ops in one span).
  Stats stats(int first_iteration, int per = 1) const;

 private:
  void rank_end(int rank, cudaStream_t stream);  // the end stamp of enqueue_gated

  int num_ranks_, num_iterations_;
  test::DeviceArray<std::uint64_t> opened_;  // [iteration]: the gate's release (ns)
  test::DeviceArray<std::uint64_t> ends_;    // [iteration][rank]: the rank's op ended (ns)
  test::DeviceArray<std::uint32_t> stamped_;  // [rank]: iterations stamped so far
};

}  // namespace moe_ep::bench
