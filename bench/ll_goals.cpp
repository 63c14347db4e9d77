// Low-latency goals (see ll_goals.hpp).
#include "ll_goals.hpp"

#include <string>

namespace moe_ep::bench {
namespace {

struct Target {
  const char* problem;
  int num_ranks;
  const char* bench;   // without the graph suffix
  bool efficiency;     // else the median in us
  bool below;
  double target;
  const char* label;   // after the bench name
};

constexpr Target kTargets[] = {
    {"ll-v3", 8, "ll-disp", true, false, 0.5, "efficiency"},
    {"ll-v3", 8, "ll-comb", true, false, 0.5, "efficiency"},
    {"ll-v3-bf16", 8, "ll-disp", true, false, 0.5, "efficiency"},
    {"ll-v3-bf16", 8, "ll-comb", true, false, 0.5, "efficiency"},
    {"ll-v3-t1", 8, "ll-pair", false, true, 20.0, "us, one cold pair"},
    {"ll-v3-t1", 8, "ll-period", false, true, 20.0, "us per pair, 8 back to back"},
    {"ll-v3-e288", 1, "ll-disp", false, true, 10.0, "us (DeepEP 19.0 kernel time)"},
    {"ll-v3-e288", 1, "ll-comb", false, true, 12.0, "us (DeepEP 25.2 kernel time)"},
};

// The rows of a target: eager and in a graph, each timed two ways.
struct Measure {
  const char* suffix;
  const char* label;
};
constexpr Measure kMeasures[] = {
    {"", "gate to last end"},
    {"-g", "gate to last end"},
    {"-k", "first kernel start to last end"},
    {"-g-k", "first kernel start to last end"},
};

}  // namespace

void add_low_latency_goals(Report& report) {
  for (const Target& t : kTargets) {
    for (const Measure& m : kMeasures) {
      const std::string bench = std::string(t.bench) + m.suffix;
      for (const Row& row : report.rows()) {
        if (row.bench != bench || row.problem != t.problem || row.num_ranks != t.num_ranks) continue;
        Goal goal;
        goal.problem = t.problem;
        goal.num_ranks = t.num_ranks;
        goal.what = bench + " " + t.label + ", " + m.label;
        goal.value = t.efficiency ? row.efficiency : row.time_us.median;
        goal.target = t.target;
        goal.below = t.below;
        report.add_goal(goal);
      }
    }
  }
}

}  // namespace moe_ep::bench
