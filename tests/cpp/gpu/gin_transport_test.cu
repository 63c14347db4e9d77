// GIN transport on one rank (a .cu: it launches a kernel). Without an RDMA NIC the host
// object must refuse with the "needs an RDMA NIC" error; with one, a warp puts 4 KiB from
// offset A to offset B of its own window with a signal, waits (bounded) and checks the bytes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "moe_ep/group.hpp"
#include "runtime/cuda_check.hpp"
#include "transport/gin_availability.hpp"
#if defined(MOE_EP_WITH_GIN)
#include "device/sync.cuh"
#include "transport/gin/gin_transport.cuh"
#include "transport/gin/gin_transport_host.hpp"
#endif

namespace moe_ep::test {
namespace {

#if defined(MOE_EP_WITH_GIN)
constexpr std::int64_t kBytes = 4096;
constexpr std::int64_t kSrc = transport::kSignalBytes;           // A
constexpr std::int64_t kDst = transport::kSignalBytes + kBytes;  // B
constexpr int kSlot = 3;

// One warp. status: 1 = the signal arrived, 2 = timed out.
__global__ void put_to_self(const __grid_constant__ transport::GinWindows windows, std::uint64_t timeout_ns,
                            int* status) {
  const transport::GinTransport t = transport::gin_transport(windows);
  const int lane = threadIdx.x % 32;
  const int self = t.topology.rank;
  t.put_warp(self, kDst, kSrc, kBytes, lane);
  if (lane != 0) return;
  t.signal_add(self, kSlot, 1);  // ordered after the put (same GIN context, same peer)
  const std::uint64_t start = device::global_timer_ns();
  while (t.read_signal(kSlot) < 1) {  // signalled just above by this thread
    if (device::global_timer_ns() - start > timeout_ns) {
      *status = 2;
      return;
    }
  }
  t.flush();
  *status = 1;
}
#endif

TEST(GinTransport, PutsToItsOwnWindowOrSaysItNeedsAnRdmaNic) {
#if !defined(MOE_EP_WITH_GIN)
  ASSERT_FALSE(transport::gin_built());
  GTEST_SKIP() << "built with MOE_EP_WITH_GIN=OFF (no NCCL >= 2.28.7 at configure time)";
#else
  ASSERT_TRUE(transport::gin_built());
  auto groups = make_in_process_group({0});
  MOE_EP_CUDA_CHECK(cudaSetDevice(0));
  std::unique_ptr<transport::GinTransportHost> host;
  try {
    host = std::make_unique<transport::GinTransportHost>(*groups[0], 2 * kBytes, /*ranks_per_node=*/1,
                                                         /*num_signals=*/8);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("needs an RDMA NIC; ncclDevCommCreate said: "), std::string::npos) << what;
    std::printf("GIN unavailable here, as expected without an RDMA NIC: %s\n", what.c_str());
    return;
  }
  ASSERT_EQ(host->window_bytes(), 2 * kBytes);

  std::vector<std::uint8_t> pattern(kBytes);
  for (std::int64_t i = 0; i < kBytes; ++i) pattern[i] = static_cast<std::uint8_t>((i * 37 + 11) & 0xff);
  MOE_EP_CUDA_CHECK(cudaMemcpy(host->local_window() + kSrc, pattern.data(), kBytes, cudaMemcpyHostToDevice));
  int* status = nullptr;
  MOE_EP_CUDA_CHECK(cudaMalloc(&status, sizeof(int)));
  MOE_EP_CUDA_CHECK(cudaMemset(status, 0, sizeof(int)));
  put_to_self<<<1, 32>>>(host->windows(), /*timeout_ns=*/5'000'000'000ull, status);
  MOE_EP_CHECK_LAUNCH();
  MOE_EP_CUDA_CHECK(cudaDeviceSynchronize());
  int seen_status = 0;
  std::vector<std::uint8_t> seen(kBytes);
  MOE_EP_CUDA_CHECK(cudaMemcpy(&seen_status, status, sizeof(int), cudaMemcpyDeviceToHost));
  MOE_EP_CUDA_CHECK(cudaMemcpy(seen.data(), host->local_window() + kDst, kBytes, cudaMemcpyDeviceToHost));
  MOE_EP_CUDA_CHECK(cudaFree(status));
  ASSERT_EQ(seen_status, 1) << "the GIN signal did not arrive within 5 s";
  EXPECT_EQ(seen, pattern);
#endif
}

}  // namespace
}  // namespace moe_ep::test
