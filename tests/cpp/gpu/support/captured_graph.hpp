// An instantiated CUDA graph of the work a function enqueues on a stream (thread-local
// capture mode, so ranks capture concurrently from their own threads), uploaded to the
// device at capture time so that a replay during a collective only enqueues.
#pragma once
#include <functional>

#include <cuda_runtime_api.h>

namespace moe_ep::test {

class CapturedGraph {
 public:
  CapturedGraph() = default;
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;
  CapturedGraph(CapturedGraph&& other) noexcept;
  ~CapturedGraph();

  // Captures what `enqueue` puts on `stream`, instantiates and uploads it.
  void capture(cudaStream_t stream, const std::function<void()>& enqueue);
  void launch(cudaStream_t stream) const;

 private:
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace moe_ep::test
