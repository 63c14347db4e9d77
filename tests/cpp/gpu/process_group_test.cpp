// Process group over CUDA IPC: two processes on one GPU (each a rank) bootstrap through a
// file allgather, map each other's buffers, exchange values through the mappings, then
// dispatch and combine over the group against the CPU reference, on one node and as two
// emulated nodes (the internode kernels across processes). Children are this binary
// started with a flag. Without MPS the two contexts time-slice: slow, but correct.
#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/process_group_child.hpp"

extern char** environ;

namespace moe_ep::test {
namespace {

TEST(ProcessGroup, TwoProcessesExchangeThroughCudaIpc) {
  constexpr int kRanks = 2;
  const std::string dir = std::filesystem::temp_directory_path() / ("moe_ep_pg_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string self = std::filesystem::read_symlink("/proc/self/exe");
  std::vector<pid_t> children;
  for (int r = 0; r < kRanks; ++r) {
    std::vector<std::string> args = {self, kProcessGroupChildFlag, std::to_string(r), std::to_string(kRanks), dir};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), environ), 0);
    children.push_back(pid);
  }
  for (int r = 0; r < kRanks; ++r) {
    int status = 0;
    ASSERT_EQ(waitpid(children[r], &status, 0), children[r]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "rank " << r << " status " << status;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moe_ep::test
