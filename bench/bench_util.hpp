// Benchmark helpers: statistics over repeated timings, the device's copy bandwidth
// measured in the same run, and the result rows printed as a table and written as JSON.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>

namespace moe_ep::bench {

struct Stats {
  double median = 0, p10 = 0, p99 = 0, min = 0;
};
Stats stats_of(std::vector<double> samples);

// A stream and two events: times work enqueued on the stream between the events.
class StreamTimer {
 public:
  StreamTimer();
  ~StreamTimer();
  StreamTimer(const StreamTimer&) = delete;
  StreamTimer& operator=(const StreamTimer&) = delete;
  cudaStream_t stream() const { return stream_; }
  // Microseconds of `enqueue(stream, i)` for `iterations` calls after `warmup` untimed ones.
  template <typename Enqueue>
  Stats repeat(int warmup, int iterations, Enqueue&& enqueue) {
    std::vector<double> us;
    for (int i = 0; i < warmup + iterations; ++i) {
      begin();
      enqueue(stream_, i);
      const double t = end_us();
      if (i >= warmup) us.push_back(t);
    }
    return stats_of(us);
  }

 private:
  void begin();
  double end_us();  // records the stop event and waits for it
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// Median over `repeats` timed device-to-device copies of `bytes`, in bytes/s counting
// bytes read plus bytes written (as BENCHMARKS.md defines the copy bandwidth).
double measure_copy_bandwidth(std::size_t bytes, int repeats);

struct Row {
  std::string bench;     // "layout", "dispatch", "combine", "copy"
  std::string problem;   // "ht-v3", ...
  int num_ranks = 1;
  int num_sms = 0;       // per rank
  Stats time_us;
  double logical_gbps_per_rank = 0;  // DeepEP's accounting
  double floor_us = 0;               // minimal HBM traffic / copy bandwidth
  double efficiency = 0;             // floor / median
  std::string note;
  std::vector<std::pair<std::string, double>> metrics;  // extra JSON fields (name, value)
};

// A target of an issue checked against a measured number, printed after the table.
struct Goal {
  std::string problem;
  int num_ranks = 1;
  std::string what;        // "ll-disp-g efficiency", ...
  double value = 0;
  double target = 0;
  bool below = false;      // pass when value < target; otherwise when value >= target
  bool pass() const { return below ? value < target : value >= target; }
};

class Report {
 public:
  void add(const Row& row) { rows_.push_back(row); }
  void add_goal(const Goal& goal) { goals_.push_back(goal); }
  const std::vector<Row>& rows() const { return rows_; }
  // The rows, then one PASS/MISS line per goal.
  void print_table() const;
  // One JSON file per (problem, ranks) under dir (created if missing).
  void write_json(const std::string& dir, const std::string& gpu_name, double copy_bandwidth) const;

 private:
  std::vector<Row> rows_;
  std::vector<Goal> goals_;
};

std::string gpu_name();

}  // namespace moe_ep::bench
