#include "runtime/peer_launch_gate.hpp"

#include <algorithm>

namespace moe_ep::runtime {

void PeerLaunchGate::launched_and_wait(int rank, std::chrono::microseconds bound) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (absent_[rank]) {
    // Back after missed calls: rejoin at the others' count, so nobody waits for calls it
    // will never make.
    absent_[rank] = false;
    launched_[rank] = std::max(launched_[rank], *std::max_element(launched_.begin(), launched_.end()) - 1);
  }
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

}  // namespace moe_ep::runtime
