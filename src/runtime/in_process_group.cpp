// In-process group: N ranks as N threads of this process. Collectives rendezvous on a
// shared generation-counting barrier with a timeout (a missing rank raises, never hangs).
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>

#include "moe_ep/errors.hpp"
#include "moe_ep/group.hpp"
#include "runtime/peer_launch_gate.hpp"

namespace moe_ep {
namespace {

struct SharedRendezvous {
  explicit SharedRendezvous(int n, std::chrono::milliseconds t) : size(n), timeout(t), slots(n), launches(n) {}
  const int size;
  const std::chrono::milliseconds timeout;
  std::mutex mutex;
  std::condition_variable cv;
  int arrived = 0;
  std::uint64_t generation = 0;
  std::vector<std::vector<char>> slots;
  runtime::PeerLaunchGate launches;

  void arrive_and_wait(int rank) {
    std::unique_lock<std::mutex> lock(mutex);
    const std::uint64_t my_generation = generation;
    if (++arrived == size) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    if (!cv.wait_for(lock, timeout, [&] { return generation != my_generation; })) {
      --arrived;
      throw Timeout("in-process group: rank " + std::to_string(rank) + " waited " +
                    std::to_string(timeout.count()) + " ms at a host collective; " + std::to_string(size - arrived - 1) +
                    " rank(s) never arrived");
    }
  }
};

class InProcessGroup final : public Group {
 public:
  InProcessGroup(std::shared_ptr<SharedRendezvous> shared, int rank, int device)
      : shared_(std::move(shared)), rank_(rank), device_(device) {}
  int rank() const override { return rank_; }
  int size() const override { return shared_->size; }
  int device() const override { return device_; }
  bool shares_address_space() const override { return true; }

  void allgather(const void* in, std::size_t bytes, void* out) override {
    {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      auto& slot = shared_->slots[rank_];
      slot.assign(static_cast<const char*>(in), static_cast<const char*>(in) + bytes);
    }
    shared_->arrive_and_wait(rank_);
    {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      for (int r = 0; r < shared_->size; ++r) {
        if (shared_->slots[r].size() != bytes) {
          throw InvalidArgument("in-process group: allgather sizes differ (rank " + std::to_string(r) + " gave " +
                                std::to_string(shared_->slots[r].size()) + " bytes, rank " + std::to_string(rank_) +
                                " gave " + std::to_string(bytes) + ")");
        }
        std::memcpy(static_cast<char*>(out) + r * bytes, shared_->slots[r].data(), bytes);
      }
    }
    shared_->arrive_and_wait(rank_);  // nobody overwrites a slot before all have read
  }

  void barrier() override { shared_->arrive_and_wait(rank_); }
  void await_peer_launches(std::chrono::microseconds bound) override {
    shared_->launches.launched_and_wait(rank_, bound);
  }
  void reset_peer_launches() override { shared_->launches.reset(rank_); }

 private:
  std::shared_ptr<SharedRendezvous> shared_;
  int rank_;
  int device_;
};

}  // namespace

std::vector<std::shared_ptr<Group>> make_in_process_group(const std::vector<int>& devices,
                                                          std::chrono::milliseconds timeout) {
  if (devices.empty()) throw InvalidArgument("make_in_process_group: need at least one rank");
  auto shared = std::make_shared<SharedRendezvous>(static_cast<int>(devices.size()), timeout);
  std::vector<std::shared_ptr<Group>> ranks;
  for (int r = 0; r < static_cast<int>(devices.size()); ++r) {
    ranks.push_back(std::make_shared<InProcessGroup>(shared, r, devices[r]));
  }
  return ranks;
}

}  // namespace moe_ep
