// Event: a shared cudaEvent_t destroyed with its last owner.
#include "moe_ep/event.hpp"

#include "runtime/cuda_check.hpp"

namespace moe_ep {

Event Event::record(cudaStream_t stream) {
  cudaEvent_t raw = nullptr;
  MOE_EP_CUDA_CHECK(cudaEventCreateWithFlags(&raw, cudaEventDisableTiming));
  Event e;
  e.event_ = std::shared_ptr<CUevent_st>(raw, [](cudaEvent_t ev) { cudaEventDestroy(ev); });
  MOE_EP_CUDA_CHECK(cudaEventRecord(raw, stream));
  return e;
}

void Event::stream_wait(cudaStream_t stream) const {
  if (event_) MOE_EP_CUDA_CHECK(cudaStreamWaitEvent(stream, event_.get(), 0));
}

void Event::synchronize() const {
  if (event_) MOE_EP_CUDA_CHECK(cudaEventSynchronize(event_.get()));
}

}  // namespace moe_ep
