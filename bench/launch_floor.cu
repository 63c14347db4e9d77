// The timing floor of one kernel launch measured like the benchmarks measure (events
// around a launch on a stream): an empty kernel. Small kernels cannot time below it.
#include "launch_floor.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "device/sync.cuh"
#include "gated_spans.hpp"
#include "launch_gate.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/programmatic_launch.hpp"
#include "support/captured_graph.hpp"
#include "support/device_array.hpp"

namespace moe_ep::bench {
namespace {
__global__ void empty_kernel() {}

// Flags of the synchronization floor: row r (one 128-byte line) holds what each stream
// signalled to stream r.
constexpr int kFlagsPerRow = 16;

// A wait of the synchronization floor that expired: who waited, for whom, for which flag.
struct SyncExpiry {
  std::uint32_t expired, stream, peer;
  std::uint64_t tag;
};

// Block 0: `barriers` all-to-all flag hand-offs among the streams' kernels, like an LL op's
// `ready` and `done` and nothing else: thread q signals stream q, then waits for stream q's
// flag (bounded: the first miss is recorded in *expiry). The other blocks exit, as idle LL
// blocks do.
__global__ void sync_kernel(std::uint64_t* flags, int num_streams, int me, std::uint64_t first_tag, int barriers,
                            SyncExpiry* expiry) {
  if (blockIdx.x != 0) return;
  const int q = threadIdx.x;
  for (int b = 0; b < barriers; ++b) {
    const std::uint64_t tag = first_tag + b;
    if (q < num_streams) {
      __threadfence();  // as ll_signal_peers
      device::store_relaxed(&flags[q * kFlagsPerRow + me], tag, true);
      const std::uint64_t start = device::global_timer_ns();
      while (device::load_relaxed(&flags[me * kFlagsPerRow + q], true) < tag) {
        if (device::global_timer_ns() - start > 1'000'000'000ull) {
          if (atomicCAS(&expiry->expired, 0u, 1u) == 0u) *expiry = {1u, static_cast<std::uint32_t>(me),
                                                                    static_cast<std::uint32_t>(q), tag};
          break;
        }
      }
    }
    __syncthreads();
  }
}

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
  const LaunchGate gate(num_streams);
  std::vector<runtime::Stream> streams(num_streams);
  std::vector<cudaEvent_t> events(num_streams, nullptr);
  for (auto& e : events) MOE_EP_CUDA_CHECK(cudaEventCreate(&e));
  test::DeviceArray<std::uint64_t> starts(static_cast<std::size_t>(num_streams) * rounds);
  for (int round = 0; round < rounds; ++round) {
    for (int s = 0; s < num_streams; ++s) {
      gate.hold(streams[s].get(), s);
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

Stats measure_gated_launch_floor(int num_streams, int rounds, bool in_graph) {
  const LaunchGate gate(num_streams);
  std::vector<runtime::Stream> streams(num_streams);
  GatedSpans spans(num_streams, rounds);
  // What a stream runs per round: as an LL op runs (ll_rounds.cpp), the kernel launched as
  // LL kernels launch (ll_launch.hpp).
  auto gated = [&](int s) {
    spans.enqueue_gated(gate, s, streams[s].get(), [&] {
      runtime::launch_programmatic(true, empty_kernel, dim3(16), dim3(32), 0, streams[s].get());
    });
  };
  std::vector<test::CapturedGraph> graphs(in_graph ? num_streams : 0);
  for (int s = 0; s < static_cast<int>(graphs.size()); ++s) graphs[s].capture(streams[s].get(), [&] { gated(s); });
  for (int round = 0; round < rounds; ++round) {
    for (int s = 0; s < num_streams; ++s) {
      if (in_graph) {
        graphs[s].launch(streams[s].get());
      } else {
        gated(s);
      }
    }
    spans.open(gate, round + 1, round);
    for (auto& stream : streams) MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  }
  gate.check();
  return spans.stats(1);  // the first round warms up
}

}  // namespace moe_ep::bench

namespace moe_ep::bench {

Stats measure_gated_sync_floor(int num_streams, int rounds, int kernels, int barriers) {
  const LaunchGate gate(num_streams);
  std::vector<runtime::Stream> streams(num_streams);
  GatedSpans spans(num_streams, rounds);
  test::DeviceArray<std::uint64_t> flags(static_cast<std::size_t>(kFlagsPerRow) * num_streams);
  test::DeviceArray<SyncExpiry> expiry(1);
  MOE_EP_CUDA_CHECK(cudaMemset(flags.get(), 0, flags.size() * sizeof(std::uint64_t)));
  MOE_EP_CUDA_CHECK(cudaMemset(expiry.get(), 0, sizeof(SyncExpiry)));
  MOE_EP_CUDA_CHECK(cudaDeviceSynchronize());
  for (int round = 0; round < rounds; ++round) {
    for (int s = 0; s < num_streams; ++s) {
      spans.enqueue_gated(gate, s, streams[s].get(), [&] {
        for (int k = 0; k < kernels; ++k) {  // as LL kernels launch (ll_launch.hpp)
          const std::uint64_t first_tag = (static_cast<std::uint64_t>(round) * kernels + k) * barriers + 1;
          runtime::launch_programmatic(true, sync_kernel, dim3(16), dim3(32), 0, streams[s].get(), flags.get(),
                                       num_streams, s, first_tag, barriers, expiry.get());
        }
      });
    }
    spans.open(gate, round + 1, round);
    for (auto& stream : streams) MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  }
  gate.check();
  const SyncExpiry missed = expiry.download()[0];
  if (missed.expired != 0) {
    throw std::runtime_error("sync floor: stream " + std::to_string(missed.stream) + " waited over 1 s for stream " +
                             std::to_string(missed.peer) + "'s flag " + std::to_string(missed.tag));
  }
  return spans.stats(1);  // the first round warms up
}

}  // namespace moe_ep::bench
