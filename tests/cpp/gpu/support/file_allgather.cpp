// File-based allgather: each rank writes round_<n>_rank_<r> atomically (write + rename),
// then polls until every rank's file of that round exists.
#include "support/file_allgather.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace moe_ep::test {

FileAllgather::FileAllgather(std::string dir, int rank, int size, std::chrono::milliseconds timeout)
    : dir_(std::move(dir)), rank_(rank), size_(size), timeout_(timeout) {}

void FileAllgather::operator()(const void* in, std::size_t bytes, void* out) {
  const std::string prefix = dir_ + "/round_" + std::to_string(round_++) + "_rank_";
  {
    const std::string tmp = prefix + std::to_string(rank_) + ".tmp";
    std::ofstream file(tmp, std::ios::binary);
    file.write(static_cast<const char*>(in), static_cast<std::streamsize>(bytes));
    file.close();
    std::filesystem::rename(tmp, prefix + std::to_string(rank_));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (int r = 0; r < size_; ++r) {
    const std::string path = prefix + std::to_string(r);
    while (!std::filesystem::exists(path)) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("file allgather: rank " + std::to_string(rank_) + " waited for " + path);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::ifstream file(path, std::ios::binary);
    file.read(static_cast<char*>(out) + static_cast<std::size_t>(r) * bytes, static_cast<std::streamsize>(bytes));
    if (static_cast<std::size_t>(file.gcount()) != bytes) throw std::runtime_error("file allgather: short read " + path);
  }
}

}  // namespace moe_ep::test
