// Transport layer on in-process ranks sharing one GPU: every rank puts a block to each
// peer it may reach by RDMA (other pretend nodes with the emulated transport, everyone with
// peer memory), signals it, waits for its own senders, then a transport barrier; blocks are
// checked byte for byte against the pattern, over several rounds with fresh data.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "host/error_report.hpp"
#include "moe_ep/group.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/device_memory.hpp"
#include "support/rank_threads.hpp"
#include "transport/memory_transport.cuh"
#include "transport/memory_transport_host.hpp"
#include "transport/transport_sync.cuh"

namespace moe_ep::test {
namespace {

using transport::TransportKind;

constexpr std::int64_t kBlockBytes = 64 * 1024 + 48;
constexpr int kBarrierSlot = transport::kMaxSignals - 1;
constexpr std::uint64_t kTimeoutNs = 2'000'000'000ull;

// Payload offsets in every window: what rank r sends to q at send_offset(q), what it
// received from s at recv_offset(num_ranks, s).
__host__ __device__ std::int64_t send_offset(int q) { return transport::kSignalBytes + q * kBlockBytes; }
__host__ __device__ std::int64_t recv_offset(int num_ranks, int s) { return transport::kSignalBytes + (num_ranks + s) * kBlockBytes; }

__host__ __device__ bool sends_to(const transport::TransportTopology& t, TransportKind kind, int q) {
  return kind == TransportKind::kPeerMemory || !t.same_node(q);
}

std::uint8_t pattern(std::uint64_t round, int src, int dst, std::int64_t i) {
  return static_cast<std::uint8_t>((round * 131 + src * 31 + dst * 7 + i * 13 + (i >> 9)) & 0xff);
}

template <typename Transport>
__global__ void exchange_round(const __grid_constant__ transport::MemoryWindows windows, TransportKind kind,
                               std::uint64_t round, protocol::ErrorRecord* error) {
  const Transport t = transport::memory_transport<Transport>(windows);
  const transport::TransportTopology& topo = t.topology;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int q = warp; q < topo.num_ranks; q += blockDim.x / 32) {
    if (sends_to(topo, kind, q)) t.put_warp(q, recv_offset(topo.num_ranks, topo.rank), send_offset(q), kBlockBytes, lane);
  }
  __syncthreads();  // every put of the block before the signals that publish them
  for (int q = threadIdx.x; q < topo.num_ranks; q += blockDim.x) {
    if (sends_to(topo, kind, q)) t.signal_add(q, topo.rank, 1);
  }
  if (threadIdx.x == 0) {
    for (int s = 0; s < topo.num_ranks; ++s) {
      const transport::TransportTopology sender{s, topo.num_ranks, topo.ranks_per_node};
      if (sends_to(sender, kind, topo.rank) && !transport::wait_signal(t, s, round, kTimeoutNs, error, protocol::Phase::kTransportSignal, s)) break;
    }
  }
  // Nobody refills its send blocks for the next round before every rank has read this one.
  transport::transport_barrier(t, kBarrierSlot, round, kTimeoutNs, error, protocol::Phase::kTransportBarrier);
}

struct Layout {
  TransportKind kind;
  int num_ranks;
  int ranks_per_node;
};

std::string name_of(const ::testing::TestParamInfo<Layout>& info) {
  const Layout& l = info.param;
  return std::string(l.kind == TransportKind::kPeerMemory ? "PeerMemory" : "EmulatedRdma") + "_" +
         std::to_string(l.num_ranks / l.ranks_per_node) + "x" + std::to_string(l.ranks_per_node);
}

class TransportExchange : public ::testing::TestWithParam<Layout> {};

TEST_P(TransportExchange, BlocksArriveExactlyBehindTheirSignals) {
  const Layout l = GetParam();
  keep_pool_memory(0);
  auto groups = make_in_process_group(std::vector<int>(l.num_ranks, 0));
  std::vector<std::vector<std::string>> mismatches(l.num_ranks);
  run_on_ranks(l.num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    const std::int64_t payload = 2 * l.num_ranks * kBlockBytes;
    transport::MemoryTransportHost host(*groups[r], l.kind, payload, l.ranks_per_node);
    const transport::TransportTopology topo = host.topology();
    runtime::HostMappedAllocation error(sizeof(protocol::ErrorRecord));
    std::memset(error.host(), 0, sizeof(protocol::ErrorRecord));
    runtime::Stream stream;
    warm_up_stream(stream.get());
    std::vector<std::uint8_t> block(kBlockBytes);
    for (std::uint64_t round = 1; round <= 3; ++round) {
      for (int q = 0; q < l.num_ranks; ++q) {
        for (std::int64_t i = 0; i < kBlockBytes; ++i) block[i] = pattern(round, r, q, i);
        MOE_EP_CUDA_CHECK(cudaMemcpy(host.local_window() + send_offset(q), block.data(), kBlockBytes, cudaMemcpyHostToDevice));
      }
      // Poison what this round must overwrite.
      MOE_EP_CUDA_CHECK(cudaMemset(host.local_window() + recv_offset(l.num_ranks, 0), 0x5a, l.num_ranks * kBlockBytes));
      groups[r]->barrier();  // every rank's blocks are in place before any put
      auto* rec = static_cast<protocol::ErrorRecord*>(error.device());
      if (l.kind == TransportKind::kPeerMemory) {
        exchange_round<transport::PeerMemoryTransport><<<1, 256, 0, stream.get()>>>(host.windows(), l.kind, round, rec);
      } else {
        exchange_round<transport::EmulatedRdmaTransport><<<1, 256, 0, stream.get()>>>(host.windows(), l.kind, round, rec);
      }
      MOE_EP_CUDA_CHECK(cudaGetLastError());
      groups[r]->await_peer_launches(std::chrono::milliseconds(20));
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
      const auto& record = *static_cast<const protocol::ErrorRecord*>(error.host());
      if (record.code != 0) throw std::runtime_error(host::describe_error(record));
      for (int s = 0; s < l.num_ranks; ++s) {
        if (!sends_to(transport::TransportTopology{s, l.num_ranks, topo.ranks_per_node}, l.kind, r)) continue;
        MOE_EP_CUDA_CHECK(cudaMemcpy(block.data(), host.local_window() + recv_offset(l.num_ranks, s), kBlockBytes,
                                     cudaMemcpyDeviceToHost));
        for (std::int64_t i = 0; i < kBlockBytes; ++i) {
          if (block[i] != pattern(round, s, r, i)) {
            mismatches[r].push_back("round " + std::to_string(round) + ": block from rank " + std::to_string(s) +
                                    " differs at byte " + std::to_string(i));
            break;
          }
        }
      }
      groups[r]->barrier();  // nobody refills before everyone checked
    }
    groups[r]->barrier();  // no peer still maps this window when it is freed
  });
  for (int r = 0; r < l.num_ranks; ++r) {
    for (const auto& m : mismatches[r]) ADD_FAILURE() << "rank " << r << ": " << m;
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, TransportExchange,
                         ::testing::Values(Layout{TransportKind::kEmulatedRdma, 8, 4}, Layout{TransportKind::kEmulatedRdma, 8, 2},
                                           Layout{TransportKind::kEmulatedRdma, 2, 1}, Layout{TransportKind::kPeerMemory, 4, 4}),
                         name_of);

// Bad arguments are refused before any mapping.
TEST(TransportHost, RefusesRanksPerNodeThatDoNotDivideTheGroup) {
  auto groups = make_in_process_group({0, 0, 0});
  run_on_ranks(3, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    EXPECT_THROW(transport::MemoryTransportHost(*groups[r], TransportKind::kEmulatedRdma, 1024, 2), InvalidArgument);
    EXPECT_THROW(transport::MemoryTransportHost(*groups[r], TransportKind::kEmulatedRdma, 1000, 1), InvalidArgument);
  });
}

}  // namespace
}  // namespace moe_ep::test
