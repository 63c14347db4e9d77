// Allocating convenience calls over Buffer's two-step API: outputs come from a
// caller-supplied Allocator (default: the stream-ordered cudaMallocAsync pool), never
// from a plain cudaMalloc per call, and are returned as owning DeviceTensors.
#pragma once
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <vector>

#include <cuda_runtime_api.h>

#include "moe_ep/buffer.hpp"

namespace moe_ep {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(std::size_t bytes, cudaStream_t stream) = 0;
  virtual void deallocate(void* ptr, std::size_t bytes, cudaStream_t stream) noexcept = 0;
};

// cudaMallocAsync / cudaFreeAsync on the device's default memory pool.
std::shared_ptr<Allocator> stream_ordered_allocator();

// Device memory from an Allocator, freed (stream-ordered, on the stream it was allocated
// on) when the last copy goes away.
class DeviceTensor {
 public:
  DeviceTensor() = default;
  DeviceTensor(std::shared_ptr<Allocator> allocator, DType dtype, std::initializer_list<std::int64_t> shape,
               cudaStream_t stream);
  const TensorView& view() const { return view_; }
  bool defined() const { return storage_ != nullptr; }

 private:
  std::shared_ptr<void> storage_;
  TensorView view_;
};

struct DispatchResult {
  DeviceTensor recv_x, recv_x_scales, recv_topk_idx, recv_topk_weights;
  std::vector<int> num_recv_tokens_per_expert;  // aligned; empty with num_worst_tokens
  DispatchHandle handle;                        // views into the tensors below
  DeviceTensor rank_prefix_matrix, send_pos, recv_src_idx;
  Event event;
};

struct CombineResult {
  DeviceTensor combined_x, combined_topk_weights;
  Event event;
};

// Dispatch with outputs from `allocator`, allocated on the caller's stream. With
// `cached`, reuses `cached->handle` (no top-k in args).
DispatchResult dispatch(Buffer& buffer, const DispatchArgs& args,
                        const std::shared_ptr<Allocator>& allocator = stream_ordered_allocator(),
                        const DispatchResult* cached = nullptr);

// Combine of `x` ([received rows, hidden] bf16) back to the home ranks of `dispatched`.
CombineResult combine(Buffer& buffer, const TensorView& x, const DispatchResult& dispatched,
                      const TensorView& topk_weights = {}, const TensorView& bias0 = {}, const TensorView& bias1 = {},
                      const Config& config = {}, const StreamOptions& stream = {},
                      const std::shared_ptr<Allocator>& allocator = stream_ordered_allocator());

}  // namespace moe_ep
