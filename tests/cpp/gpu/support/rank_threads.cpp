// Thread-per-rank driver and the in-process test cluster.
#include "support/rank_threads.hpp"

#include <stdexcept>
#include <string>

#include "runtime/cuda_check.hpp"

namespace moe_ep::test {

std::vector<std::exception_ptr> run_on_ranks_collect(int num_ranks, const std::function<void(int rank)>& body) {
  std::vector<std::exception_ptr> errors(num_ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < num_ranks; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

void run_on_ranks(int num_ranks, const std::function<void(int rank)>& body) {
  const auto errors = run_on_ranks_collect(num_ranks, body);
  std::string all;
  for (int r = 0; r < num_ranks; ++r) {
    if (!errors[r]) continue;
    try {
      std::rethrow_exception(errors[r]);
    } catch (const std::exception& e) {
      all += "\n  [thread of rank " + std::to_string(r) + "] " + e.what();
    }
  }
  if (!all.empty()) throw std::runtime_error("rank threads failed:" + all);
}

void keep_pool_memory(int device) {
  cudaMemPool_t pool;
  MOE_EP_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  std::uint64_t never = ~std::uint64_t{0};
  MOE_EP_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &never));
}

void warm_up_stream(cudaStream_t stream) {
  void* scratch = nullptr;
  MOE_EP_CUDA_CHECK(cudaMallocAsync(&scratch, 16, stream));
  MOE_EP_CUDA_CHECK(cudaMemsetAsync(scratch, 0, 16, stream));
  MOE_EP_CUDA_CHECK(cudaFreeAsync(scratch, stream));
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
}

Cluster::Cluster(int n, std::int64_t num_nvl_bytes, BufferOptions options, int device, std::int64_t num_rdma_bytes)
    : num_ranks(n), buffers(n), streams(n, nullptr) {
  keep_pool_memory(device);
  auto groups = make_in_process_group(std::vector<int>(n, device));
  run_on_ranks(n, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(device));
    buffers[r] = std::make_unique<Buffer>(groups[r], num_nvl_bytes, num_rdma_bytes, options);
    MOE_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[r], cudaStreamNonBlocking));
    warm_up_stream(streams[r]);
  });
}

Cluster::~Cluster() {
  for (cudaStream_t s : streams) {
    if (s != nullptr) cudaStreamDestroy(s);
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TimedResults timed_on_ranks(Cluster& cluster, const std::function<void(int rank)>& body) {
  TimedResults out;
  out.seconds.assign(cluster.num_ranks, 0.0);
  out.errors = run_on_ranks_collect(cluster.num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
    struct RecordElapsed {  // also when body(r) throws
      double& seconds;
      std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
      ~RecordElapsed() { seconds = seconds_since(start); }
    } record{out.seconds[r]};
    body(r);
  });
  return out;
}

}  // namespace moe_ep::test
