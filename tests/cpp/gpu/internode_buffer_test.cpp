// A Buffer whose ranks span nodes needs the GIN RDMA transport. On a machine without an
// RDMA NIC (the CI GPU machine) construction must fail with an error that says so; in a
// build without GIN, with one that says that; on a machine with a NIC (transport up), with
// one that says what does not run over GIN (low latency, one node) or that num_rdma_bytes
// is too small. Never a hang.
#include <gtest/gtest.h>

#include <string>

#include "moe_ep/buffer.hpp"
#include "runtime/cuda_check.hpp"
#include "support/rank_threads.hpp"
#include "transport/gin_availability.hpp"

namespace moe_ep::test {
namespace {

// One of the three clear answers, by build and machine.
void expect_clear_internode_refusal(const std::string& message) {
  if (!transport::gin_built()) {
    EXPECT_NE(message.find("built without GIN"), std::string::npos) << message;
    return;
  }
  const bool no_nic = message.find("GIN (NCCL GPU-initiated networking) needs an RDMA NIC") != std::string::npos;
  const bool no_kernels = message.find("only the internode high-throughput kernels run over it") != std::string::npos ||
                          message.find("internode_size_hint") != std::string::npos;
  const bool nccl_refused = message.find("internode transport:") != std::string::npos;  // e.g. two ranks on one GPU
  EXPECT_TRUE(no_nic || no_kernels || nccl_refused) << message;
}

TEST(InternodeBuffer, OneRankAskingForGinIsRefusedClearly) {
  MOE_EP_CUDA_CHECK(cudaSetDevice(0));
  auto groups = make_in_process_group({0});
  BufferOptions options;
  options.use_gin_transport = true;
  try {
    Buffer buffer(groups[0], 1 << 20, 0, options);
    ADD_FAILURE() << "a one-node Buffer over GIN was constructed, but only the internode kernels run over GIN";
  } catch (const std::exception& e) {
    expect_clear_internode_refusal(e.what());
    std::printf("internode Buffer on this machine: %s\n", e.what());
  }
}

// A process group of two ranks declared one per node: internode by its shape, as deep_ep
// picks internode by group shape.
TEST(InternodeBuffer, GroupSpanningNodesIsRefusedClearly) {
  auto in_process = make_in_process_group({0, 0});
  const auto errors = run_on_ranks_collect(2, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    auto shared = in_process[r];
    auto group = make_process_group(
        r, 2, 0, [shared](const void* in, std::size_t bytes, void* out) { shared->allgather(in, bytes, out); },
        /*num_ranks_per_node=*/1);
    Buffer buffer(group, 1 << 20);
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(errors[r]) << "rank " << r << " constructed an internode Buffer";
    try {
      std::rethrow_exception(errors[r]);
    } catch (const std::exception& e) {
      expect_clear_internode_refusal(e.what());
    }
  }
}

}  // namespace
}  // namespace moe_ep::test
