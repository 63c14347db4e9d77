// How ranks find each other. A Group moves host bytes between ranks (allgather,
// barrier) and says whether peers share this process's address space. Kernels never
// see it: the Buffer turns it into an array of peer base pointers.
#pragma once
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

namespace moe_ep {

class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // CUDA device this rank runs on.
  virtual int device() const = 0;
  // Ranks per NVLink domain (node); size() for a one-node group.
  virtual int num_ranks_per_node() const { return size(); }
  // True when every rank lives in this process: peers' device pointers are valid here.
  virtual bool shares_address_space() const = 0;
  // Collective: every rank contributes `bytes` bytes; `out` receives size()*bytes, rank
  // order. Throws Timeout if a rank does not arrive within the group's bound.
  virtual void allgather(const void* in, std::size_t bytes, void* out) = 0;
  virtual void barrier();
  // In-process groups: after this rank enqueued a collective kernel, waits at most `bound`
  // until every peer has enqueued as many (see runtime/peer_launch_gate.hpp). Others: no-op.
  virtual void await_peer_launches(std::chrono::microseconds bound) { (void)bound; }
  // Forgets this rank's launches (a collective reset, while no rank is in a call).
  virtual void reset_peer_launches() {}
};

// N ranks in this process, rank i on devices[i] (repeat a device to share it). Drive each
// rank from its own thread. Host collectives give up after `timeout`.
std::vector<std::shared_ptr<Group>> make_in_process_group(
    const std::vector<int>& devices, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// One process per rank; the caller supplies the allgather (torch.distributed, MPI, ...).
using AllgatherFn = std::function<void(const void* in, std::size_t bytes, void* out)>;
std::shared_ptr<Group> make_process_group(int rank, int size, int device, AllgatherFn allgather,
                                          int num_ranks_per_node = 0);

}  // namespace moe_ep
