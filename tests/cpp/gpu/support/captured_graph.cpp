// Capture, instantiate, upload and replay of one CUDA graph (see captured_graph.hpp).
#include "support/captured_graph.hpp"

#include <utility>

#include "runtime/cuda_check.hpp"

namespace moe_ep::test {

CapturedGraph::CapturedGraph(CapturedGraph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}

CapturedGraph::~CapturedGraph() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
}

void CapturedGraph::capture(cudaStream_t stream, const std::function<void()>& enqueue) {
  MOE_EP_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue();
  } catch (...) {
    cudaGraph_t abandoned = nullptr;
    cudaStreamEndCapture(stream, &abandoned);
    if (abandoned != nullptr) cudaGraphDestroy(abandoned);
    throw;
  }
  cudaGraph_t graph = nullptr;
  MOE_EP_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  const cudaError_t status = cudaGraphInstantiate(&exec_, graph, 0);
  MOE_EP_CUDA_CHECK(cudaGraphDestroy(graph));
  MOE_EP_CUDA_CHECK(status);
  // Upload now, while no collective runs: the first launch then only enqueues.
  MOE_EP_CUDA_CHECK(cudaGraphUpload(exec_, stream));
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void CapturedGraph::launch(cudaStream_t stream) const { MOE_EP_CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }

}  // namespace moe_ep::test
