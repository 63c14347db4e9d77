// The floor of one flag hand-off between two SMs of this GPU: one thread stores a flag, a
// thread on another SM polls it (acquire loads), then answers the same way; half a round
// trip is one hand-off. `fenced`: a fence (__threadfence) before each store, as a signal
// that publishes data pays. An LL op's `ready` and `done` are such hand-offs among all
// ranks; the LL README compares.
#pragma once
#include "bench_util.hpp"

namespace moe_ep::bench {
// Microseconds per one-way hand-off, one sample per repetition of `round_trips`.
Stats measure_flag_handoff(bool fenced, int repetitions, int round_trips);
}  // namespace moe_ep::bench
