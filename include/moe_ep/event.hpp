// A shared, reference-counted CUDA event: what async calls return (deep_ep's
// EventOverlap holds one). An empty Event means "nothing to wait for".
#pragma once
#include <memory>

#include <cuda_runtime_api.h>

namespace moe_ep {

class Event {
 public:
  Event() = default;
  // Records a new event on `stream`.
  static Event record(cudaStream_t stream);
  bool valid() const { return event_ != nullptr; }
  cudaEvent_t get() const { return event_.get(); }
  // Makes `stream` wait for the event (no-op when empty).
  void stream_wait(cudaStream_t stream) const;
  void synchronize() const;

 private:
  std::shared_ptr<CUevent_st> event_;
};

}  // namespace moe_ep
