// One rank of the process-group test (see process_group_child.hpp).
#include "support/process_group_child.hpp"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/peer_mapping.hpp"
#include "support/file_allgather.hpp"

namespace moe_ep::test {

int run_process_group_child(int rank, int size, const std::string& dir) {
  try {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    auto group = make_process_group(rank, size, 0, FileAllgather(dir, rank, size));
    std::vector<std::uint64_t> seen(size);
    {
      runtime::PeerMapping mapping(*group, 4096);
      for (int q = 0; q < size; ++q) {
        const std::uint64_t value = 1000ull * (rank + 1) + q;  // slot `rank` of peer q
        MOE_EP_CUDA_CHECK(cudaMemcpy(mapping.bases()[q] + 8 * rank, &value, 8, cudaMemcpyHostToDevice));
      }
      MOE_EP_CUDA_CHECK(cudaDeviceSynchronize());
      group->barrier();  // every rank has written into every buffer
      MOE_EP_CUDA_CHECK(cudaMemcpy(seen.data(), mapping.local(), 8 * size, cudaMemcpyDeviceToHost));
      group->barrier();  // nobody unmaps while a peer still writes
    }
    for (int q = 0; q < size; ++q) {
      if (seen[q] != 1000ull * (q + 1) + rank) {
        std::fprintf(stderr, "rank %d: slot %d holds %llu\n", rank, q, static_cast<unsigned long long>(seen[q]));
        return 1;
      }
    }
    Buffer buffer(group, Buffer::intranode_size_hint(64, size));
    DispatchArgs args;
    DispatchHandle handle;
    try {
      buffer.dispatch_notify(args, handle);
      std::fprintf(stderr, "rank %d: dispatch over a process group did not refuse\n", rank);
      return 1;
    } catch (const InvalidArgument& e) {
      if (std::strstr(e.what(), "spans processes") == nullptr) {
        std::fprintf(stderr, "rank %d: unexpected message: %s\n", rank, e.what());
        return 1;
      }
    }
    group->barrier();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return 1;
  }
}

}  // namespace moe_ep::test
