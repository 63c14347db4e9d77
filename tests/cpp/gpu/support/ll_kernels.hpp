// Small kernels of the low-latency tests: the fake expert (an expert-specific transform of
// the dispatched rows into the combine input, computed bit-identically on the host for the
// CPU oracle) and an unrelated kernel to run between a call and its receive hook.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

#include "reference/reference.hpp"

namespace moe_ep::test {

// Rows of the combine input that no valid slot owns: a combine that reads one fails loudly.
inline constexpr std::uint16_t kHugeBf16 = 0x7f00;

// How the dispatched rows are stored.
enum class LlPayload {
  kBf16,       // recv_x bf16 [E, N, hidden]
  kFp8,        // recv_x e4m3 [E, N, hidden], scales fp32 [E, N, hidden/128] column-major
  kFp8Ue8m0,   // recv_x e4m3, scales int32 [E, N, ceil(hidden/512)] packed exponents, column-major
};

struct ExpertTransformArgs {
  const void* recv_x = nullptr;
  const void* recv_x_scales = nullptr;  // unused for kBf16
  const int* recv_count = nullptr;      // [E]
  std::uint16_t* out = nullptr;         // bf16 [E, N, hidden]
  int num_local_experts = 0;            // E
  std::int64_t rows_per_expert = 0;     // N = num_ranks * max_tokens
  int hidden = 0;
  int first_global_expert = 0;          // rank * E
  LlPayload payload = LlPayload::kBf16;
};

// out[e][i] = bf16(dequantized recv_x[e][i] * (global expert + 1)) for i < recv_count[e],
// kHugeBf16 in every other row. Enqueued on `stream`; capturable.
void launch_expert_transform(const ExpertTransformArgs& args, cudaStream_t stream);

// The transform of one value on the host, bit-identical with the kernel's: the float
// product with the expert's factor, rounded to bf16 (nearest even).
inline std::uint16_t expert_output_bf16(float dequantized, int global_expert) {
  return reference::float_to_bf16(dequantized * static_cast<float>(global_expert + 1));
}

// Work unrelated to the library: spins for about spin_ns on the device, then writes
// scratch[i] = 3 * i + 1 for i < count.
void launch_unrelated_work(int* scratch, int count, std::uint64_t spin_ns, cudaStream_t stream);
// True when scratch holds what launch_unrelated_work writes.
bool unrelated_work_done(const int* host_scratch, int count);

}  // namespace moe_ep::test
