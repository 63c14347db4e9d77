// The allocating convenience calls: count, allocate from the Allocator, copy.
#include "moe_ep/allocating.hpp"

#include "runtime/cuda_check.hpp"

namespace moe_ep {
namespace {

class StreamOrderedAllocator final : public Allocator {
 public:
  void* allocate(std::size_t bytes, cudaStream_t stream) override {
    void* ptr = nullptr;
    if (bytes > 0) MOE_EP_CUDA_CHECK(cudaMallocAsync(&ptr, bytes, stream));
    return ptr;
  }
  void deallocate(void* ptr, std::size_t, cudaStream_t stream) noexcept override {
    if (ptr != nullptr) cudaFreeAsync(ptr, stream);
  }
};

}  // namespace

std::shared_ptr<Allocator> stream_ordered_allocator() {
  static const auto allocator = std::make_shared<StreamOrderedAllocator>();
  return allocator;
}

DeviceTensor::DeviceTensor(std::shared_ptr<Allocator> allocator, DType dtype, std::initializer_list<std::int64_t> shape,
                           cudaStream_t stream) {
  view_ = TensorView::contiguous(nullptr, dtype, shape);
  const std::size_t bytes = static_cast<std::size_t>(view_.numel()) * dtype_bytes(dtype);
  void* ptr = allocator->allocate(bytes, stream);
  storage_ = std::shared_ptr<void>(ptr, [allocator, bytes, stream](void* p) { allocator->deallocate(p, bytes, stream); });
  view_.data = ptr;
}

DispatchResult dispatch(Buffer& buffer, const DispatchArgs& args, const std::shared_ptr<Allocator>& allocator,
                        const DispatchResult* cached) {
  const cudaStream_t stream = args.stream.compute_stream;
  const int R = buffer.num_ranks();
  const std::int64_t num_tokens = args.x.size(0), hidden = args.x.size(1);
  DispatchResult result;
  if (cached != nullptr) {
    result.handle = cached->handle;
    result.rank_prefix_matrix = cached->rank_prefix_matrix;
    result.send_pos = cached->send_pos;
    result.recv_src_idx = cached->recv_src_idx;
  } else {
    result.rank_prefix_matrix = DeviceTensor(allocator, DType::kInt32, {R, R}, stream);
    result.send_pos = DeviceTensor(allocator, DType::kInt32, {num_tokens, R}, stream);
    result.handle.rank_prefix_matrix = result.rank_prefix_matrix.view();
    result.handle.send_pos = result.send_pos.view();
  }
  const DispatchCounts counts = buffer.dispatch_notify(args, result.handle, cached != nullptr);
  const std::int64_t rows = counts.num_recv_rows;
  result.num_recv_tokens_per_expert = counts.num_recv_tokens_per_expert;
  DispatchOutputs out;
  result.recv_x = DeviceTensor(allocator, args.x.dtype, {rows, hidden}, stream);
  out.recv_x = result.recv_x.view();
  if (args.x_scales.defined()) {
    const std::int64_t num_scales = args.x_scales.ndim == 1 ? 1 : args.x_scales.size(1);
    result.recv_x_scales = DeviceTensor(allocator, DType::kFloat32, {rows, num_scales}, stream);
    out.recv_x_scales = result.recv_x_scales.view();
  }
  if (cached == nullptr) {
    result.recv_src_idx = DeviceTensor(allocator, DType::kInt32, {rows}, stream);
    result.handle.recv_src_idx = result.recv_src_idx.view();
    if (args.topk_idx.defined()) {
      const std::int64_t num_topk = args.topk_idx.size(1);
      result.recv_topk_idx = DeviceTensor(allocator, DType::kInt64, {rows, num_topk}, stream);
      out.recv_topk_idx = result.recv_topk_idx.view();
      if (args.topk_weights.defined()) {
        result.recv_topk_weights = DeviceTensor(allocator, DType::kFloat32, {rows, num_topk}, stream);
        out.recv_topk_weights = result.recv_topk_weights.view();
      }
    }
  }
  // The comm stream writes the outputs: order it after their allocation on `stream`.
  Event::record(stream).stream_wait(buffer.comm_stream());
  result.event = buffer.dispatch_receive(args, result.handle, out, cached != nullptr);
  return result;
}

CombineResult combine(Buffer& buffer, const TensorView& x, const DispatchResult& dispatched,
                      const TensorView& topk_weights, const TensorView& bias0, const TensorView& bias1,
                      const Config& config, const StreamOptions& stream, const std::shared_ptr<Allocator>& allocator) {
  CombineResult result;
  const std::int64_t num_tokens = dispatched.handle.num_tokens, hidden = x.size(1);
  CombineArgs args;
  args.x = x;
  args.topk_weights = topk_weights;
  args.bias0 = bias0;
  args.bias1 = bias1;
  args.config = config;
  args.stream = stream;
  result.combined_x = DeviceTensor(allocator, DType::kBFloat16, {num_tokens, hidden}, stream.compute_stream);
  args.combined_x = result.combined_x.view();
  if (topk_weights.defined()) {
    result.combined_topk_weights =
        DeviceTensor(allocator, DType::kFloat32, {num_tokens, topk_weights.size(1)}, stream.compute_stream);
    args.combined_topk_weights = result.combined_topk_weights.view();
  }
  result.event = buffer.combine(args, dispatched.handle);  // its comm stream waits on the caller's stream first
  return result;
}

}  // namespace moe_ep
