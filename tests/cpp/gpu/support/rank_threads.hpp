// Runs one function per rank, each on its own thread (how in-process ranks are driven),
// and rethrows the first exception after all threads joined.
#pragma once
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "moe_ep/buffer.hpp"

namespace moe_ep::test {

void run_on_ranks(int num_ranks, const std::function<void(int rank)>& body);

// Exceptions per rank instead of rethrowing (fault tests inspect each rank's error).
std::vector<std::exception_ptr> run_on_ranks_collect(int num_ranks, const std::function<void(int rank)>& body);

// Keeps the device's default memory pool from returning memory at synchronization points:
// that trim can wait for the whole device, so a rank synchronizing its own stream could
// stall on peers that spin waiting for it. Test and benchmark drivers of in-process ranks
// call it (the README tells users of in-process groups to do the same).
void keep_pool_memory(int device);

// Wall-clock seconds since `start` (steady clock).
double seconds_since(std::chrono::steady_clock::time_point start);

// Gives a new stream its first work and waits for it, before any collective: a stream's
// first use can wait for the device, i.e. for peers spinning on this rank.
void warm_up_stream(cudaStream_t stream);

// N in-process ranks on `device`, each with its Buffer and a compute stream (warmed up).
// num_rdma_bytes: the low-latency region (with options.low_latency_mode).
struct Cluster {
  Cluster(int num_ranks, std::int64_t num_nvl_bytes, BufferOptions options = {}, int device = 0,
          std::int64_t num_rdma_bytes = 0);
  ~Cluster();
  int num_ranks;
  std::vector<std::unique_ptr<Buffer>> buffers;
  std::vector<cudaStream_t> streams;
};

// Runs body on every rank (fault tests): each rank's exception and its wall-clock
// seconds, recorded even when body throws.
struct TimedResults {
  std::vector<std::exception_ptr> errors;
  std::vector<double> seconds;
};
TimedResults timed_on_ranks(Cluster& cluster, const std::function<void(int rank)>& body);

}  // namespace moe_ep::test
