// An empty kernel's event-timed duration: the floor under the small-kernel timings.
#pragma once
#include "bench_util.hpp"

namespace moe_ep::bench {
Stats measure_launch_floor(int iterations);
}
