#include "runtime/peer_launch_gate.hpp"

namespace moe_ep::runtime {

void PeerLaunchGate::launched_and_wait(int rank, std::chrono::microseconds bound) {
  std::unique_lock<std::mutex> lock(mutex_);
  // Every call passes once (exceptions included), so a rank marked absent because it was
  // slow keeps its count: it is still making the same calls.
  absent_[rank] = false;
  const std::uint64_t mine = ++launched_[rank];
  cv_.notify_all();
  const auto caught_up = [&] {
    for (std::size_t q = 0; q < launched_.size(); ++q) {
      if (!absent_[q] && launched_[q] < mine) return false;
    }
    return true;
  };
  if (cv_.wait_for(lock, bound, caught_up)) return;
  for (std::size_t q = 0; q < launched_.size(); ++q) {
    if (launched_[q] < mine) absent_[q] = true;
  }
}

void PeerLaunchGate::reset(int rank) {
  std::lock_guard<std::mutex> lock(mutex_);
  launched_[rank] = 0;
  absent_[rank] = false;
}

}  // namespace moe_ep::runtime
