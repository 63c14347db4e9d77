// Benchmark helpers: statistics over repeated timings, the device's copy bandwidth
// measured in the same run, and the result rows printed as a table and written as JSON.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe_ep::bench {

struct Stats {
  double median = 0, p10 = 0, p99 = 0, min = 0;
};
Stats stats_of(std::vector<double> samples);

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
};

class Report {
 public:
  void add(const Row& row) { rows_.push_back(row); }
  void print_table() const;
  // One JSON file per (problem, ranks) under dir (created if missing).
  void write_json(const std::string& dir, const std::string& gpu_name, double copy_bandwidth) const;

 private:
  std::vector<Row> rows_;
};

std::string gpu_name();

}  // namespace moe_ep::bench
