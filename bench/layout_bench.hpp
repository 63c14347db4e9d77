// The layout benchmark (see layout_bench.cpp).
#pragma once
#include "bench_util.hpp"

namespace moe_ep::bench {
void run_layout_bench(Report& report, double copy_bandwidth);
}
