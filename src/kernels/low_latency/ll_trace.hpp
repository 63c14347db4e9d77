// Phase timestamps of the low-latency kernels, a diagnostic built only with the CMake
// option MOE_EP_LL_TRACE: each rank's kernels write the global timer (ns) at fixed points
// of the latest dispatch and combine into a per-rank slot, and moe_ep_bench --ll-probe
// prints the timeline. Without the option the stamps compile to nothing.
#pragma once
#include <cstdint>
#include <vector>

namespace moe_ep::kernels {

inline constexpr int kLlTracePoints = 8;  // per op
// Points of an op: entry; ready signalled; every ready seen; receive side laid out or rows
// resolved; first slots loaded; latest block's items done; last block through its
// ticket; every peer's done seen.
enum LlTracePoint : int {
  kTraceEntered = 0,
  kTraceReadySignalled = 1,
  kTraceReadySeen = 2,
  kTraceLaidOut = 3,
  kTraceSlotsLoaded = 4,
  kTraceItemsDone = 5,
  kTraceLastBlock = 6,
  kTraceDoneSeen = 7,
};

#ifdef MOE_EP_LL_TRACE
// Device memory [2 ops][kLlTracePoints] of a rank (dispatch, then combine), allocated on
// first use; and its values now (after the caller synchronized).
std::uint64_t* ll_trace_slot(int rank);
std::vector<std::uint64_t> ll_trace_read(int rank);
#endif

}  // namespace moe_ep::kernels
