// The timing floor of one kernel launch measured like the benchmarks measure (events
// around a launch on a stream): an empty kernel. Small kernels cannot time below it.
#include "launch_floor.hpp"

#include <algorithm>
#include <vector>

#include "device/sync.cuh"
#include "gated_spans.hpp"
#include "launch_gate.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/programmatic_launch.hpp"
#include "support/device_array.hpp"

namespace moe_ep::bench {
namespace {
__global__ void empty_kernel() {}

// Block 0 records when the kernel started running.
__global__ void record_start(std::uint64_t* start) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *start = device::global_timer_ns();
}
}  // namespace

Stats measure_launch_floor(int iterations) {
  StreamTimer timer;
  return timer.repeat(10, iterations, [](cudaStream_t stream, int) {
    empty_kernel<<<1, 32, 0, stream>>>();
    MOE_EP_CHECK_LAUNCH();
  });
}

Stats measure_gated_start_spread(int num_streams, int rounds, bool timing_events) {
  const LaunchGate gate;
  std::vector<runtime::Stream> streams(num_streams);
  std::vector<cudaEvent_t> events(num_streams, nullptr);
  for (auto& e : events) MOE_EP_CUDA_CHECK(cudaEventCreate(&e));
  test::DeviceArray<std::uint64_t> starts(static_cast<std::size_t>(num_streams) * rounds);
  for (int round = 0; round < rounds; ++round) {
    for (int s = 0; s < num_streams; ++s) {
      gate.hold(streams[s].get(), round + 1);
      if (timing_events) MOE_EP_CUDA_CHECK(cudaEventRecord(events[s], streams[s].get()));
      record_start<<<16, 128, 0, streams[s].get()>>>(starts.get() + round * num_streams + s);
      MOE_EP_CHECK_LAUNCH();
    }
    gate.open(round + 1);
    for (auto& stream : streams) MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  }
  gate.check();
  for (cudaEvent_t e : events) MOE_EP_CUDA_CHECK(cudaEventDestroy(e));
  const std::vector<std::uint64_t> got = starts.download();
  std::vector<double> spreads;
  for (int round = 1; round < rounds; ++round) {  // the first round warms up
    const auto first = got.begin() + round * num_streams;
    const auto [lo, hi] = std::minmax_element(first, first + num_streams);
    spreads.push_back(static_cast<double>(*hi - *lo) / 1000.0);
  }
  return stats_of(spreads);
}

Stats measure_gated_launch_floor(int num_streams, int rounds) {
  const LaunchGate gate;
  std::vector<runtime::Stream> streams(num_streams);
  GatedSpans spans(num_streams, rounds);
  for (int round = 0; round < rounds; ++round) {
    for (int s = 0; s < num_streams; ++s) {
      gate.hold(streams[s].get(), round + 1);
      // As LL kernels launch (ll_launch.hpp).
      runtime::launch_programmatic(true, empty_kernel, dim3(16), dim3(32), 0, streams[s].get());
      spans.rank_end(s, round, streams[s].get());
    }
    spans.open(gate, round + 1, round);
    for (auto& stream : streams) MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  }
  gate.check();
  return spans.stats(1);  // the first round warms up
}

}  // namespace moe_ep::bench
