// Statistics, copy bandwidth, and the table/JSON output of the benchmarks.
#include "bench_util.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <cuda_runtime_api.h>

#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {

Stats stats_of(std::vector<double> samples) {
  Stats s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) { return samples[static_cast<std::size_t>(q * (samples.size() - 1) + 0.5)]; };
  s.median = at(0.5);
  s.p10 = at(0.1);
  s.p99 = at(0.99);
  s.min = samples.front();
  return s;
}

StreamTimer::StreamTimer() {
  MOE_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  MOE_EP_CUDA_CHECK(cudaEventCreate(&start_));
  MOE_EP_CUDA_CHECK(cudaEventCreate(&stop_));
}

StreamTimer::~StreamTimer() {
  cudaEventDestroy(start_);
  cudaEventDestroy(stop_);
  cudaStreamDestroy(stream_);
}

void StreamTimer::begin() { MOE_EP_CUDA_CHECK(cudaEventRecord(start_, stream_)); }

double StreamTimer::end_us() {
  MOE_EP_CUDA_CHECK(cudaEventRecord(stop_, stream_));
  MOE_EP_CUDA_CHECK(cudaEventSynchronize(stop_));
  float ms = 0;
  MOE_EP_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
  return ms * 1e3;
}

double measure_copy_bandwidth(std::size_t bytes, int repeats) {
  void *src = nullptr, *dst = nullptr;
  MOE_EP_CUDA_CHECK(cudaMalloc(&src, bytes));
  MOE_EP_CUDA_CHECK(cudaMalloc(&dst, bytes));
  MOE_EP_CUDA_CHECK(cudaMemset(src, 0x3c, bytes));
  StreamTimer timer;
  const Stats us = timer.repeat(3, repeats, [&](cudaStream_t stream, int) {
    MOE_EP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
  });
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * static_cast<double>(bytes) / (us.median * 1e-6);
}

std::string gpu_name() {
  cudaDeviceProp prop{};
  MOE_EP_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  return prop.name;
}

void Report::print_table() const {
  std::printf("\n%-11s %-11s %5s %4s %10s %10s %10s %12s %9s %6s  %s\n", "bench", "problem", "ranks", "sms", "median_us",
              "p10_us", "p99_us", "GB/s/rank", "floor_us", "eff", "note");
  for (const Row& r : rows_) {
    std::printf("%-11s %-11s %5d %4d %10.1f %10.1f %10.1f %12.1f %9.1f %6.2f  %s\n", r.bench.c_str(), r.problem.c_str(),
                r.num_ranks, r.num_sms, r.time_us.median, r.time_us.p10, r.time_us.p99, r.logical_gbps_per_rank,
                r.floor_us, r.efficiency, r.note.c_str());
  }
  for (const Goal& g : goals_) {
    std::printf("goal        %-11s %5d  %-34s %9.2f %s %8.2f  %s\n", g.problem.c_str(), g.num_ranks, g.what.c_str(), g.value,
                g.below ? "< " : ">=", g.target, g.pass() ? "PASS" : "MISS");
  }
  std::fflush(stdout);
}

void Report::write_json(const std::string& dir, const std::string& gpu, double copy_bandwidth) const {
  std::filesystem::create_directories(dir);
  std::map<std::string, std::vector<const Row*>> files;
  for (const Row& r : rows_) files[r.problem + "-" + std::to_string(r.num_ranks)].push_back(&r);
  std::string safe_gpu = gpu;
  for (char& c : safe_gpu) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  for (const auto& [key, rows] : files) {
    std::ofstream out(dir + "/" + safe_gpu + "-" + key + ".json");
    out << "{\"gpu\": \"" << gpu << "\", \"copy_bandwidth_Bps\": " << copy_bandwidth << ", \"rows\": [\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row& r = *rows[i];
      out << "  {\"bench\": \"" << r.bench << "\", \"problem\": \"" << r.problem << "\", \"num_ranks\": " << r.num_ranks
          << ", \"num_sms\": " << r.num_sms << ", \"median_us\": " << r.time_us.median << ", \"p10_us\": " << r.time_us.p10
          << ", \"p99_us\": " << r.time_us.p99 << ", \"min_us\": " << r.time_us.min
          << ", \"logical_GBps_per_rank\": " << r.logical_gbps_per_rank << ", \"floor_us\": " << r.floor_us
          << ", \"efficiency\": " << r.efficiency << ", \"note\": \"" << r.note << "\"";
      for (const auto& [name, value] : r.metrics) out << ", \"" << name << "\": " << value;
      out << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    out << "], \"goals\": [";
    bool first = true;
    for (const Goal& g : goals_) {
      if (g.problem + "-" + std::to_string(g.num_ranks) != key) continue;
      out << (first ? "\n" : ",\n") << "  {\"what\": \"" << g.what << "\", \"value\": " << g.value
          << ", \"op\": \"" << (g.below ? "<" : ">=") << "\", \"target\": " << g.target
          << ", \"pass\": " << (g.pass() ? "true" : "false") << "}";
      first = false;
    }
    out << "]}\n";
  }
}

}  // namespace moe_ep::bench
