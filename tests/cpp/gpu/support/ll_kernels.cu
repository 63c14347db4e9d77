// The fake expert and the unrelated kernel of the low-latency tests (see ll_kernels.hpp).
#include "support/ll_kernels.hpp"

#include <cuda_bf16.h>

#include "runtime/cuda_check.hpp"

namespace moe_ep::test {
namespace {

constexpr int kThreads = 256;

// e4m3 (fn) bits -> float, exactly: (8 + m) * 2^(e - 10), subnormals m * 2^-9.
__device__ float e4m3_value(std::uint8_t v) {
  const int exponent = (v >> 3) & 0xf, mantissa = v & 7;
  float f;
  if (exponent == 0xf && mantissa == 7) {
    f = __int_as_float(0x7fc00000);
  } else if (exponent == 0) {
    f = ldexpf(static_cast<float>(mantissa), -9);
  } else {
    f = ldexpf(static_cast<float>(8 + mantissa), exponent - 10);
  }
  return (v & 0x80) ? -f : f;
}

__global__ void expert_transform_kernel(ExpertTransformArgs a) {
  const int expert = blockIdx.y;
  const std::int64_t row = blockIdx.x;
  const std::int64_t n = a.rows_per_expert;
  int count = a.recv_count[expert];
  count = count < 0 ? 0 : (count > n ? static_cast<int>(n) : count);
  std::uint16_t* out = a.out + (static_cast<std::int64_t>(expert) * n + row) * a.hidden;
  if (row >= count) {
    for (int c = threadIdx.x; c < a.hidden; c += blockDim.x) out[c] = kHugeBf16;
    return;
  }
  const float factor = static_cast<float>(a.first_global_expert + expert + 1);
  const std::int64_t element0 = (static_cast<std::int64_t>(expert) * n + row) * a.hidden;
  for (int c = threadIdx.x; c < a.hidden; c += blockDim.x) {
    float v;
    if (a.payload == LlPayload::kBf16) {
      const std::uint16_t bits = static_cast<const std::uint16_t*>(a.recv_x)[element0 + c];
      v = __uint_as_float(static_cast<unsigned>(bits) << 16);
    } else {
      const std::uint8_t q = static_cast<const std::uint8_t*>(a.recv_x)[element0 + c];
      float scale;
      if (a.payload == LlPayload::kFp8) {
        const int num_scales = a.hidden / 128;
        const float* scales = static_cast<const float*>(a.recv_x_scales);
        scale = scales[static_cast<std::int64_t>(expert) * n * num_scales + static_cast<std::int64_t>(c / 128) * n + row];
      } else {
        const int num_words = (a.hidden / 128 + 3) / 4;
        const std::int32_t* words = static_cast<const std::int32_t*>(a.recv_x_scales);
        const std::uint32_t word = static_cast<std::uint32_t>(
            words[static_cast<std::int64_t>(expert) * n * num_words + static_cast<std::int64_t>(c / 512) * n + row]);
        const std::uint32_t exponent_byte = (word >> (8 * ((c / 128) % 4))) & 0xffu;
        scale = __uint_as_float(exponent_byte << 23);
      }
      v = e4m3_value(q) * scale;
    }
    out[c] = __bfloat16_as_ushort(__float2bfloat16_rn(v * factor));
  }
}

__global__ void unrelated_work_kernel(int* scratch, int count, std::uint64_t spin_ns) {
  if (threadIdx.x == 0 && blockIdx.x == 0 && spin_ns > 0) {
    std::uint64_t start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
      __nanosleep(1000);
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < spin_ns);
  }
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) scratch[i] = 3 * i + 1;
}

}  // namespace

void launch_expert_transform(const ExpertTransformArgs& args, cudaStream_t stream) {
  if (args.num_local_experts == 0 || args.rows_per_expert == 0) return;
  const dim3 grid(static_cast<unsigned>(args.rows_per_expert), static_cast<unsigned>(args.num_local_experts));
  expert_transform_kernel<<<grid, kThreads, 0, stream>>>(args);
  MOE_EP_CUDA_CHECK(cudaGetLastError());
}

void launch_unrelated_work(int* scratch, int count, std::uint64_t spin_ns, cudaStream_t stream) {
  unrelated_work_kernel<<<1, kThreads, 0, stream>>>(scratch, count, spin_ns);
  MOE_EP_CUDA_CHECK(cudaGetLastError());
}

bool unrelated_work_done(const int* host_scratch, int count) {
  for (int i = 0; i < count; ++i) {
    if (host_scratch[i] != 3 * i + 1) return false;
  }
  return true;
}

}  // namespace moe_ep::test
