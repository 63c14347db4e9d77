#include "transport/gin/gin_transport_host.hpp"

#include <cuda_runtime_api.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "moe_ep/errors.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::transport {
namespace {

const std::string kWho = "internode transport: ";

// NCCL's words: the result's string, then the last warning NCCL logged.
std::string nccl_text(ncclResult_t result, ncclComm_t comm) {
  std::string text = ncclGetErrorString(result);
  const char* last = ncclGetLastError(comm);
  std::string detail = last != nullptr ? last : "";
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
  if (!detail.empty()) text += ": " + detail;
  return text;
}

void check_nccl(ncclResult_t result, const char* call, ncclComm_t comm) {
  if (result != ncclSuccess) throw std::runtime_error(kWho + call + " failed: " + nccl_text(result, comm));
}

// GIN needs an RDMA NIC (GDAKI or the proxy) and a communicator with symmetric memory;
// NCCL refuses a GIN device communicator for either reason, so both read as "unavailable".
[[noreturn]] void throw_gin_unsupported(const std::string& nccl_said) {
  throw std::runtime_error(kWho + "GIN (NCCL GPU-initiated networking) needs an RDMA NIC; ncclDevCommCreate said: " +
                           nccl_said);
}

void check_arguments(const Group& group, std::int64_t window_bytes, int ranks_per_node, int num_signals) {
  if (window_bytes < 0 || window_bytes % 16 != 0) {
    throw InvalidArgument(kWho + "GIN window_bytes=" + std::to_string(window_bytes) +
                          " must be a non-negative multiple of 16");
  }
  if (ranks_per_node <= 0 || group.size() % ranks_per_node != 0) {
    throw InvalidArgument(kWho + "GIN ranks_per_node=" + std::to_string(ranks_per_node) +
                          " must divide the group size " + std::to_string(group.size()));
  }
  if (num_signals < 1 || num_signals > kMaxSignals) {
    throw InvalidArgument(kWho + "GIN num_signals=" + std::to_string(num_signals) + " must be in [1, " +
                          std::to_string(kMaxSignals) + "]");
  }
}

// What every rank publishes before NCCL starts: rank 0's unique id (or why it has none) and
// the arguments, which must agree on every rank or the NCCL collectives would hang.
struct Hello {
  ncclUniqueId id;
  std::int64_t window_bytes;
  std::int32_t ranks_per_node;
  std::int32_t num_signals;
  std::int32_t id_status;  // rank 0's ncclGetUniqueId result
  std::int32_t unused;
};

}  // namespace

GinTransportHost::GinTransportHost(Group& group, std::int64_t window_bytes, int ranks_per_node, int num_signals)
    : device_(group.device()) {
  check_arguments(group, window_bytes, ranks_per_node, num_signals);
  runtime::DeviceGuard on_device(device_);  // NCCL binds the communicator to the current device

  Hello mine{};
  mine.window_bytes = window_bytes;
  mine.ranks_per_node = ranks_per_node;
  mine.num_signals = num_signals;
  if (group.rank() == 0) mine.id_status = ncclGetUniqueId(&mine.id);
  std::vector<Hello> all(group.size());
  group.allgather(&mine, sizeof mine, all.data());
  for (int r = 0; r < group.size(); ++r) {
    if (all[r].window_bytes != window_bytes || all[r].ranks_per_node != ranks_per_node ||
        all[r].num_signals != num_signals) {
      throw InvalidArgument(kWho + "GIN arguments differ between ranks: rank " + std::to_string(r) +
                            " has window_bytes=" + std::to_string(all[r].window_bytes) +
                            " ranks_per_node=" + std::to_string(all[r].ranks_per_node) +
                            " num_signals=" + std::to_string(all[r].num_signals) + ", rank " +
                            std::to_string(group.rank()) + " has " + std::to_string(window_bytes) + ", " +
                            std::to_string(ranks_per_node) + ", " + std::to_string(num_signals));
    }
  }
  if (all[0].id_status != ncclSuccess) {
    throw std::runtime_error(kWho + "ncclGetUniqueId failed on rank 0: " +
                             ncclGetErrorString(static_cast<ncclResult_t>(all[0].id_status)));
  }

  const std::size_t bytes = static_cast<std::size_t>(kSignalBytes + window_bytes);
  // Each step that can fail on one rank alone is followed by an agreement (the group's
  // allgather is bounded), so no rank enters a collective NCCL call its peers never reach;
  // on any failure every rank aborts without collective teardown.
  const auto step = [&](const char* what, const std::function<void()>& body) {
    std::string failure;
    try {
      body();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    std::int32_t ok = failure.empty() ? 1 : 0;
    std::vector<std::int32_t> oks(group.size());
    try {
      group.allgather(&ok, sizeof ok, oks.data());
    } catch (...) {
      release(/*abort=*/true);
      throw;
    }
    for (int r = 0; r < group.size(); ++r) {
      if (oks[r] != 0) continue;
      release(/*abort=*/true);
      throw std::runtime_error(!failure.empty() ? failure
                                                : kWho + "rank " + std::to_string(r) + " failed in " + what +
                                                      " (see that rank's error)");
    }
  };
  step("ncclCommInitRank", [&] {
    check_nccl(ncclCommInitRank(&comm_, group.size(), all[0].id, group.rank()), "ncclCommInitRank", comm_);
    check_nccl(ncclMemAlloc(&window_base_, bytes), "ncclMemAlloc", comm_);
    MOE_EP_CUDA_CHECK(cudaMemset(window_base_, 0, bytes));
    // Kernels on non-blocking streams do not wait for the legacy stream: wait for the zeros.
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
    set_values_ = runtime::DeviceAllocation(sizeof(std::uint64_t) * group.size() * num_signals);
  });
  step("ncclCommWindowRegister", [&] {
    check_nccl(ncclCommWindowRegister(comm_, window_base_, bytes, &windows_.window, NCCL_WIN_COLL_SYMMETRIC),
               "ncclCommWindowRegister", comm_);
  });
  step("ncclDevCommCreate", [&] { create_dev_comm(num_signals); });
  windows_.local_base = static_cast<std::uint8_t*>(window_base_);
  windows_.set_values = static_cast<std::uint64_t*>(set_values_.get());
  windows_.window_bytes = static_cast<std::int64_t>(bytes);
  windows_.topology.rank = group.rank();
  windows_.topology.num_ranks = group.size();
  windows_.topology.ranks_per_node = ranks_per_node;
  windows_.num_signals = num_signals;
}

// Asked for GIN, NCCL refuses the device communicator when this machine has no GIN: no
// NIC or plugin, GIN disabled, or (seen on NIC-less H100/H200) no symmetric memory.
void GinTransportHost::create_dev_comm(int num_signals) {
#if defined(NCCL_DEV_COMM_REQUIREMENTS_INITIALIZER)
  ncclDevCommRequirements reqs = NCCL_DEV_COMM_REQUIREMENTS_INITIALIZER;  // versioned from NCCL 2.29
#else
  ncclDevCommRequirements reqs{};
#endif
  // GIN to every rank, also on one node, where NCCL would not set it up by itself.
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 29, 7)
  reqs.ginConnectionType = NCCL_GIN_CONNECTION_FULL;
#else
  reqs.ginForceEnable = true;
#endif
  reqs.ginContextCount = 1;  // a hint; GinTransport uses context 0 only
  reqs.ginSignalCount = num_signals;
  const ncclResult_t result = ncclDevCommCreate(comm_, &reqs, &windows_.dev_comm);
  if (result != ncclSuccess) {
    // Asked with GIN requirements, any refusal means no GIN here (seen on a NIC-less H200:
    // "Communicator does not support symmetric memory!").
    throw_gin_unsupported(nccl_text(result, comm_));
  }
  dev_comm_created_ = true;
  if (windows_.dev_comm.ginContextCount == 0) {
    throw_gin_unsupported("success, but the device communicator has no GIN context");
  }
}

void GinTransportHost::release(bool abort) noexcept {
  int previous = -1;
  const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device_ &&
                        cudaSetDevice(device_) == cudaSuccess;
  set_values_ = runtime::DeviceAllocation();
  if (abort) {
    // No collective teardown: peers may never reach it. The abort frees the registrations.
    if (comm_ != nullptr) ncclCommAbort(comm_);
    if (window_base_ != nullptr) ncclMemFree(window_base_);
  } else {
    if (dev_comm_created_) ncclDevCommDestroy(comm_, &windows_.dev_comm);
    if (windows_.window != nullptr) ncclCommWindowDeregister(comm_, windows_.window);
    if (window_base_ != nullptr) ncclMemFree(window_base_);
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }
  dev_comm_created_ = false;
  windows_.window = nullptr;
  window_base_ = nullptr;
  comm_ = nullptr;
  if (switched) cudaSetDevice(previous);
}

GinTransportHost::~GinTransportHost() { release(/*abort=*/false); }

}  // namespace moe_ep::transport
