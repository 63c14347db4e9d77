// Kernel start and end times as a profiler records them (CUPTI's activity records: what
// torch.profiler, and so DeepEP's tests, read), for BENCHMARKS.md's latency: from the first
// kernel start to the last kernel end of all ranks. libcupti is loaded at run time
// (LD_LIBRARY_PATH, then MOE_EP_CUPTI_LIB, then the toolkit's paths): without it, or with
// MOE_EP_BENCH_CUPTI=0, nothing is recorded and the callers leave those numbers out.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace moe_ep::bench {

// Records every kernel's start and end from construction to destruction (one at a time in
// a process: CUPTI's activity buffers are process-wide).
class KernelActivity {
 public:
  KernelActivity();
  ~KernelActivity();
  KernelActivity(const KernelActivity&) = delete;
  KernelActivity& operator=(const KernelActivity&) = delete;

  bool recording() const { return recording_; }
  // Of the kernels completed since the last call (their streams synchronized before) whose
  // name contains `name_part`, the first start to the last end, in us; nullopt when none,
  // when CUPTI dropped a record or had no times for one since the last call, or when not
  // recording. Forgets every kernel it has seen.
  std::optional<double> take_span_us(std::string_view name_part);

 private:
  bool recording_ = false;
};

}  // namespace moe_ep::bench
