// Launch gate of in-process ranks. CUDA runs streams on a few hardware queues; work a rank
// queues behind its own spinning collective kernel holds back everything queued after it
// on the same queue, a peer's collective kernel included, until the spin times out. So
// after launching a collective kernel, each rank waits (bounded) until every peer has
// launched as many: no rank queues dependent work ahead of a peer's collective.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

namespace moe_ep::runtime {

class PeerLaunchGate {
 public:
  explicit PeerLaunchGate(int num_ranks) : launched_(num_ranks, 0), absent_(num_ranks, false) {}

  // Rank `rank` has enqueued one more collective kernel. Returns once every present peer
  // has enqueued as many, or after `bound`; peers still behind then are marked absent (a
  // rank that stopped calling is not waited for again until it calls). Callers pass once
  // per collective launch, on every path (a skipped or failed call too).
  void launched_and_wait(int rank, std::chrono::microseconds bound);
  // Back to no launches (Buffer::reset, between barriers that every rank passes).
  void reset(int rank);

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::uint64_t> launched_;
  std::vector<bool> absent_;
};

}  // namespace moe_ep::runtime
