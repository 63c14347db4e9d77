// Staging for process groups: peers in other processes cannot address the caller's
// tensors, so what they must read is first copied (stream-ordered, on the comm stream)
// into this rank's NVL buffer, which they map through CUDA IPC.
#pragma once
#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "moe_ep/tensor_view.hpp"

namespace moe_ep::host {

class StagingArea {
 public:
  StagingArea(std::uint8_t* base, std::int64_t bytes, std::string op) : base_(base), bytes_(bytes), op_(std::move(op)) {}
  // Copies the memory span of `t` (strides kept) and returns the staged data pointer.
  const void* stage_span(const TensorView& t, cudaStream_t stream);
  // Copies the rows of a 2-D `t` (any row stride) densely: the staged row stride is
  // `row_bytes`.
  const void* stage_rows(const TensorView& t, std::int64_t row_bytes, cudaStream_t stream);
  // Room for `bytes` that peers will write (128-byte aligned); nullptr for 0 bytes.
  void* reserve(std::int64_t bytes) { return bytes == 0 ? nullptr : take(bytes); }

 private:
  std::uint8_t* take(std::int64_t bytes);  // throws InvalidArgument when staging is too small
  std::uint8_t* base_;
  std::int64_t bytes_;
  std::int64_t used_ = 0;
  std::string op_;
};

}  // namespace moe_ep::host
