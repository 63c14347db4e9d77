// A real cross-rank exchange through peer pointers: 8 in-process ranks on one GPU; each
// rank's kernel writes a distinct value into every peer's buffer, then each rank reads,
// from its own buffer, the value every peer wrote.
#include <gtest/gtest.h>

#include <vector>

#include "moe_ep/group.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/peer_mapping.hpp"
#include "support/device_array.hpp"
#include "support/rank_threads.hpp"

namespace moe_ep::test {
namespace {

struct PeerBases {
  std::uint64_t* base[64];
};

__global__ void write_to_peers(PeerBases peers, int num_ranks, int rank) {
  const int peer = threadIdx.x;
  if (peer < num_ranks) peers.base[peer][rank] = 1000ull * (rank + 1) + peer;  // slot `rank` of the peer
}

TEST(PeerMapping, EightInProcessRanksExchangeThroughPeerPointers) {
  constexpr int kRanks = 8;
  auto groups = make_in_process_group(std::vector<int>(kRanks, 0));
  std::vector<std::unique_ptr<runtime::PeerMapping>> maps(kRanks);
  std::vector<std::vector<std::uint64_t>> seen(kRanks);
  run_on_ranks(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    maps[r] = std::make_unique<runtime::PeerMapping>(*groups[r], 4096);
    PeerBases bases{};
    for (int q = 0; q < kRanks; ++q) bases.base[q] = reinterpret_cast<std::uint64_t*>(maps[r]->bases()[q]);
    write_to_peers<<<1, 32>>>(bases, kRanks, r);
    MOE_EP_CHECK_LAUNCH();
    MOE_EP_CUDA_CHECK(cudaDeviceSynchronize());
    groups[r]->barrier();  // every rank has written everywhere
    seen[r].resize(kRanks);
    MOE_EP_CUDA_CHECK(cudaMemcpy(seen[r].data(), maps[r]->local(), kRanks * 8, cudaMemcpyDeviceToHost));
    groups[r]->barrier();  // nobody frees a buffer a peer still reads
  });
  for (int r = 0; r < kRanks; ++r) {
    for (int q = 0; q < kRanks; ++q) EXPECT_EQ(seen[r][q], 1000ull * (q + 1) + r) << "rank " << r << " from " << q;
  }
}

}  // namespace
}  // namespace moe_ep::test
