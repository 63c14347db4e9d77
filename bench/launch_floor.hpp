// An empty kernel's event-timed duration: the floor under the small-kernel timings; how
// far apart the kernels of N streams released together by a LaunchGate start (what every
// in-process rank count pays before its ranks' kernels can meet); and the floor of N
// gated streams timed as the LL ops are (GatedSpans), with and without the flag hand-offs
// of LL ops.
#pragma once
#include "bench_util.hpp"

namespace moe_ep::bench {
Stats measure_launch_floor(int iterations);
// Per round: N streams held by one gate, each then launching a 16-block kernel that records
// its start (globaltimer); the spread (last start - first start) in us. timing_events: a
// timing event before each kernel, where per-stream event timing would put one (they
// serialize in the front end; see gated_spans.hpp).
Stats measure_gated_start_spread(int num_streams, int rounds, bool timing_events = false);
// An empty 16-block kernel on each of N streams held by one gate, launched and timed as the
// LL rounds launch and time their ops (programmatic launch, GatedSpans): their floor.
// in_graph: each stream's hold, kernel and end stamp in one CUDA graph, as the LL rounds
// in graphs run them.
Stats measure_gated_launch_floor(int num_streams, int rounds, bool in_graph = false);
// The same with `kernels` kernels per stream, each making `barriers` all-to-all flag
// hand-offs among the N streams and nothing else: the synchronization floor of LL ops
// (an op signals and awaits `ready`, then `done`).
Stats measure_gated_sync_floor(int num_streams, int rounds, int kernels, int barriers);
}
