// Stream: a CUDA stream this module creates and owns (non-blocking, destroyed with the
// object). In-process ranks use these instead of torch's pool, whose 64+ streams would
// wrap around CUDA_DEVICE_MAX_CONNECTIONS and could share a hardware queue with a peer's.
#include <string>

#include "bindings.hpp"
#include "moe_ep/errors.hpp"

namespace moe_ep::bindings {
namespace {

class OwnedStream {
 public:
  explicit OwnedStream(int device) : device_(device) {
    int previous = 0;
    check(cudaGetDevice(&previous));
    check(cudaSetDevice(device));
    const cudaError_t status = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
    cudaSetDevice(previous);
    check(status);
  }
  ~OwnedStream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);  // returns at once; CUDA frees it when idle
  }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;

  std::uintptr_t handle() const { return to_handle(stream_); }
  int device() const { return device_; }

 private:
  static void check(cudaError_t status) {
    if (status != cudaSuccess) throw CudaError(std::string("moe_ep._C.Stream: ") + cudaGetErrorString(status));
  }
  int device_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

void bind_stream(nb::module_& m) {
  nb::class_<OwnedStream>(m, "Stream", "A non-blocking CUDA stream owned by this object.")
      .def(nb::init<int>(), nb::arg("device"))
      .def_prop_ro("handle", &OwnedStream::handle, "The raw cudaStream_t as int.")
      .def_prop_ro("device", &OwnedStream::device);
}

}  // namespace moe_ep::bindings
