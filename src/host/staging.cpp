// Stream-ordered copies into the staging region, with a clear error when it is too small.
#include "host/staging.hpp"

#include "host/validation.hpp"
#include "protocol/nvl_buffer_layout.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::host {

std::uint8_t* StagingArea::take(std::int64_t bytes) {
  const std::int64_t begin = protocol::align_up(used_, 128);
  require(begin + bytes <= bytes_, op_,
          "a process group stages what peers read in the buffer: this call needs " + std::to_string(begin + bytes) +
              " bytes of staging but the buffer has " + std::to_string(bytes_) +
              " (raise num_nvl_bytes; see Buffer::intranode_size_hint with hidden_bytes)");
  used_ = begin + bytes;
  return base_ + begin;
}

const void* StagingArea::stage_span(const TensorView& t, cudaStream_t stream) {
  if (!t.defined()) return nullptr;
  std::int64_t span = 1;
  for (int d = 0; d < t.ndim; ++d) {
    if (t.shape[d] == 0) return take(0);
    span += (t.shape[d] - 1) * t.strides[d];
  }
  const std::int64_t bytes = span * static_cast<std::int64_t>(dtype_bytes(t.dtype));
  std::uint8_t* staged = take(bytes);
  if (bytes > 0) MOE_EP_CUDA_CHECK(cudaMemcpyAsync(staged, t.data, bytes, cudaMemcpyDeviceToDevice, stream));
  return staged;
}

const void* StagingArea::stage_rows(const TensorView& t, std::int64_t row_bytes, cudaStream_t stream) {
  const std::int64_t rows = t.size(0);
  std::uint8_t* staged = take(rows * row_bytes);
  if (rows > 0) {
    const std::int64_t pitch = t.stride(0) * static_cast<std::int64_t>(dtype_bytes(t.dtype));
    MOE_EP_CUDA_CHECK(cudaMemcpy2DAsync(staged, row_bytes, t.data, pitch, row_bytes, rows, cudaMemcpyDeviceToDevice,
                                        stream));
  }
  return staged;
}

}  // namespace moe_ep::host
