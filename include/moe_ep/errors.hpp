// Exceptions of the public API. InvalidArgument maps to Python ValueError; CudaError and
// Timeout derive from runtime_error (Python RuntimeError), as deep_ep callers expect.
#pragma once
#include <stdexcept>
#include <string>

namespace moe_ep {

struct InvalidArgument : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A bounded device wait expired; the message names rank, phase, peer and channel.
struct Timeout : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace moe_ep
