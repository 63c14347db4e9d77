// The main job without a GPU: the CPU reference of one ht-v3-shaped exchange.
#pragma once

namespace moe_ep::bench {
// Returns 0 when the reference's algebraic checks hold.
int run_cpu_reference_demo();
}
