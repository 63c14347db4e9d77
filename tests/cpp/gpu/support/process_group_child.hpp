// The child side of the process-group test: one rank in its own process. The test binary
// runs it when started as `moe_ep_gpu_tests --process-group-child RANK SIZE DIR`.
#pragma once
#include <string>

namespace moe_ep::test {

inline constexpr const char* kProcessGroupChildFlag = "--process-group-child";

// Maps every rank's buffer through CUDA IPC, writes a value into each peer's buffer and
// checks what the peers wrote into its own; then runs an FP8 dispatch and a combine over
// the process group (staged, pulled) against the CPU reference. Returns the exit code.
int run_process_group_child(int rank, int size, const std::string& dir);

}  // namespace moe_ep::test
