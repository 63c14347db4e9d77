// The child side of the process-group test: one rank in its own process. The test binary
// runs it when started as `moe_ep_gpu_tests --process-group-child RANK SIZE DIR`.
#pragma once
#include <string>

namespace moe_ep::test {

inline constexpr const char* kProcessGroupChildFlag = "--process-group-child";

// Maps every rank's buffer through CUDA IPC, writes a value into each peer's buffer,
// checks what the peers wrote into its own, and checks that a Buffer over the process
// group builds and that dispatch refuses it clearly. Returns the process exit code.
int run_process_group_child(int rank, int size, const std::string& dir);

}  // namespace moe_ep::test
