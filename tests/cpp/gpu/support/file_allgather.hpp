// An allgather between processes through files in a shared folder: what a test uses to
// bootstrap a process group without NCCL (NCCL refuses two ranks on one GPU).
#pragma once
#include <chrono>
#include <cstddef>
#include <string>

namespace moe_ep::test {

class FileAllgather {
 public:
  FileAllgather(std::string dir, int rank, int size, std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Collective; throws std::runtime_error when a rank's file does not appear in time.
  void operator()(const void* in, std::size_t bytes, void* out);

 private:
  std::string dir_;
  int rank_, size_;
  std::chrono::milliseconds timeout_;
  int round_ = 0;
};

}  // namespace moe_ep::test
