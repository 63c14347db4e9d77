// Global-timer spans of gated ops on in-process ranks (see gated_spans.hpp).
#include "gated_spans.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "device/sync.cuh"
#include "runtime/cuda_check.hpp"
#include "runtime/programmatic_launch.hpp"

namespace moe_ep::bench {
namespace {

// Launched as a programmatic dependent of the stream's last kernel: its wait returns once
// that kernel has completed. Stamps the rank's next iteration (only its stream counts them).
// One stamp too many is counted (span_us raises it), not written.
__global__ void end_stamp_kernel(std::uint64_t* rank_ends, int num_ranks, std::uint32_t num_iterations,
                                 std::uint32_t* stamped) {
  device::wait_prior_grid();
  const std::uint64_t now = device::global_timer_ns();
  const std::uint32_t iteration = *stamped;
  *stamped = iteration + 1;
  if (iteration < num_iterations) rank_ends[static_cast<std::size_t>(iteration) * num_ranks] = now;
}

}  // namespace

GatedSpans::GatedSpans(int num_ranks, int num_iterations)
    : num_ranks_(num_ranks),
      num_iterations_(num_iterations),
      opened_(static_cast<std::size_t>(num_iterations)),
      ends_(static_cast<std::size_t>(num_iterations) * num_ranks),
      stamped_(std::vector<std::uint32_t>(static_cast<std::size_t>(num_ranks), 0)) {}

void GatedSpans::rank_end(int rank, cudaStream_t stream) {
  runtime::launch_programmatic(true, end_stamp_kernel, dim3(1), dim3(1), 0, stream, ends_.get() + rank, num_ranks_,
                               static_cast<std::uint32_t>(num_iterations_), stamped_.get() + rank);
}

void GatedSpans::enqueue_gated(const LaunchGate& gate, int rank, cudaStream_t stream,
                               const std::function<void()>& work) {
  gate.hold(stream, rank);
  work();
  rank_end(rank, stream);
}

void GatedSpans::open(const LaunchGate& gate, std::uint32_t epoch, int iteration) {
  gate.open(epoch, opened_.get() + iteration);
}

std::vector<double> GatedSpans::span_us(int first_iteration) const {
  for (const std::uint32_t count : stamped_.download()) {
    if (count != static_cast<std::uint32_t>(num_iterations_)) {
      throw std::runtime_error("gated spans: a rank stamped " + std::to_string(count) + " ends of " +
                               std::to_string(num_iterations_) + " iterations");
    }
  }
  const std::vector<std::uint64_t> opened = opened_.download(), ends = ends_.download();
  std::vector<double> out;
  for (int it = first_iteration; it < num_iterations_; ++it) {
    const auto first = ends.begin() + static_cast<std::ptrdiff_t>(it) * num_ranks_;
    const std::uint64_t last = *std::max_element(first, first + num_ranks_);
    out.push_back(static_cast<double>(last - opened[it]) / 1000.0);
  }
  return out;
}

Stats GatedSpans::stats(int first_iteration, int per) const {
  std::vector<double> spans = span_us(first_iteration);
  for (double& us : spans) us /= per;
  return stats_of(spans);
}

}  // namespace moe_ep::bench
