// Process group: one process per rank, collectives through a caller-supplied allgather.
#include <string>

#include "moe_ep/errors.hpp"
#include "moe_ep/group.hpp"

namespace moe_ep {
namespace {

class ProcessGroup final : public Group {
 public:
  ProcessGroup(int rank, int size, int device, AllgatherFn fn, int per_node)
      : rank_(rank), size_(size), device_(device), fn_(std::move(fn)), per_node_(per_node) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int device() const override { return device_; }
  int num_ranks_per_node() const override { return per_node_; }
  // A group of one rank lives in this process: it takes the paths of ranks that share an
  // address space (read in place, a rank alone's kernels), as an in-process group of one.
  bool shares_address_space() const override { return size_ == 1; }
  void allgather(const void* in, std::size_t bytes, void* out) override { fn_(in, bytes, out); }

 private:
  int rank_, size_, device_;
  AllgatherFn fn_;
  int per_node_;
};

}  // namespace

std::shared_ptr<Group> make_process_group(int rank, int size, int device, AllgatherFn allgather,
                                          int num_ranks_per_node) {
  if (size <= 0 || rank < 0 || rank >= size) {
    throw InvalidArgument("make_process_group: rank " + std::to_string(rank) + " outside [0, " +
                          std::to_string(size) + ")");
  }
  if (!allgather) throw InvalidArgument("make_process_group: allgather function is empty");
  if (num_ranks_per_node <= 0) num_ranks_per_node = size;
  return std::make_shared<ProcessGroup>(rank, size, device, std::move(allgather), num_ranks_per_node);
}

}  // namespace moe_ep
