// The launch gate of in-process ranks (host only): ranks that launch together pass at once;
// a rank that stalls once costs one bounded wait and leaves the counts aligned (no drift,
// so later calls pass at once again); a rank that stopped calling is waited for only once;
// reset() forgets the counts.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "runtime/peer_launch_gate.hpp"

namespace moe_ep::runtime {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kBound{20};
// Calls that may wait 15 ms for no fault of the gate: more ranks than cores (CI has two)
// and the OS can leave a thread off a core that long. A gate whose counts drifted makes
// nearly every call of a round wait instead.
constexpr int kSchedulerDelays = 2;

// Runs `calls` gated calls on each of `ranks` threads; before_call(rank, i) runs first.
// Returns how many calls waited at least 15 ms.
template <typename Before>
int slow_calls(PeerLaunchGate& gate, int ranks, int calls, Before before_call) {
  std::atomic<int> slow{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      for (int i = 0; i < calls; ++i) {
        before_call(r, i);
        const auto start = Clock::now();
        gate.launched_and_wait(r, kBound);
        if (Clock::now() - start >= std::chrono::milliseconds(15)) ++slow;
      }
    });
  }
  for (auto& t : threads) t.join();
  return slow.load();
}

TEST(PeerLaunchGate, RanksCallingTogetherNeverWaitForTheBound) {
  PeerLaunchGate gate(4);
  EXPECT_LE(slow_calls(gate, 4, 200, [](int, int) {}), kSchedulerDelays);
}

TEST(PeerLaunchGate, OneStallCostsOneWaitAndTheCountsStayAligned) {
  PeerLaunchGate gate(2);
  // Rank 1 stalls once for longer than the bound; both keep making every call.
  const int slow = slow_calls(gate, 2, 60, [](int rank, int i) {
    if (rank == 1 && i == 5) std::this_thread::sleep_for(std::chrono::milliseconds(30));
  });
  EXPECT_LE(slow, 2) << "a stall made later calls wait too: the counts drifted";
  // Aligned afterwards: a further round passes at once.
  EXPECT_LE(slow_calls(gate, 2, 50, [](int, int) {}), kSchedulerDelays);
}

TEST(PeerLaunchGate, ARankThatStoppedCallingIsWaitedForOnceAndResetRealigns) {
  PeerLaunchGate gate(3);
  // Rank 2 makes no calls: the others wait for it once, then pass at once.
  std::atomic<int> slow{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      for (int i = 0; i < 20; ++i) {
        const auto start = Clock::now();
        gate.launched_and_wait(r, kBound);
        if (Clock::now() - start >= std::chrono::milliseconds(15)) ++slow;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(slow.load(), 2);
  // After a reset of every rank, all three call together again without waiting.
  for (int r = 0; r < 3; ++r) gate.reset(r);
  EXPECT_LE(slow_calls(gate, 3, 50, [](int, int) {}), kSchedulerDelays);
}

TEST(PeerLaunchGate, ALoneRankNeverWaits) {
  PeerLaunchGate gate(1);
  const auto start = Clock::now();
  for (int i = 0; i < 100; ++i) gate.launched_and_wait(0, kBound);
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(15));
}

}  // namespace
}  // namespace moe_ep::runtime
