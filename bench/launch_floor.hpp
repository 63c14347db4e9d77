// An empty kernel's event-timed duration: the floor under the small-kernel timings; and how
// far apart the kernels of N streams released together by a LaunchGate start (what every
// in-process rank count pays before its ranks' kernels can meet).
#pragma once
#include "bench_util.hpp"

namespace moe_ep::bench {
Stats measure_launch_floor(int iterations);
// Per round: N streams held by one gate, each then launching a 16-block kernel that records
// its start (globaltimer); the spread (last start - first start) in us.
Stats measure_gated_start_spread(int num_streams, int rounds);
}
