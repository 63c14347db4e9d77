// Tensor checks with messages that name the argument, the expectation and the value.
#include "host/validation.hpp"

#include <cstdint>
#include <sstream>

namespace moe_ep::host {

void fail(const std::string& op, const std::string& message) { throw InvalidArgument(op + ": " + message); }

namespace {

std::string expected_text(const TensorSpec& spec) {
  std::ostringstream out;
  int i = 0;
  for (DType d : spec.dtypes) out << (i++ ? " or " : "") << dtype_name(d);
  out << "[";
  i = 0;
  for (std::int64_t s : spec.shape) {
    out << (i++ ? ", " : "");
    if (s == kAnySize) {
      out << "*";
    } else {
      out << s;
    }
  }
  out << "]" << (spec.contiguous ? " contiguous" : "");
  return out.str();
}

// A misaligned vector access would be a fault that ends the CUDA context: refuse it here.
void check_alignment(const std::string& op, const TensorView& t, const TensorSpec& spec) {
  const auto address = reinterpret_cast<std::uintptr_t>(t.data);
  if (t.numel() > 0 && address % spec.align != 0) {
    std::ostringstream out;
    out << spec.name << ": the data pointer 0x" << std::hex << address << std::dec << " is not " << spec.align
        << "-byte aligned (its rows move in " << spec.align << "-byte vectors); pass an aligned copy";
    fail(op, out.str());
  }
  // A contiguous tensor's strides follow from its row size, which each op checks itself.
  if (spec.contiguous) return;
  const std::int64_t element = static_cast<std::int64_t>(dtype_bytes(t.dtype));
  for (int d = 0; d + 1 < t.ndim; ++d) {
    if (t.shape[d] > 1 && (t.strides[d] * element) % spec.align != 0) {
      fail(op, std::string(spec.name) + ": stride " + std::to_string(t.strides[d]) + " of dimension " +
                   std::to_string(d) + " is not a multiple of " + std::to_string(spec.align) + " bytes (got " +
                   t.describe() + ")");
    }
  }
}

}  // namespace

void check_tensor(const std::string& op, const TensorView& t, const TensorSpec& spec) {
  if (!t.defined()) fail(op, std::string(spec.name) + " is required: expected " + expected_text(spec));
  bool ok = t.ndim == static_cast<int>(spec.shape.size());
  bool dtype_ok = false;
  for (DType d : spec.dtypes) dtype_ok |= d == t.dtype;
  ok = ok && dtype_ok;
  if (ok) {
    int d = 0;
    for (std::int64_t s : spec.shape) {
      ok = ok && (s == kAnySize || t.shape[d] == s);
      ++d;
    }
  }
  if (ok && spec.contiguous) ok = t.is_contiguous();
  if (ok && t.numel() > 0 && t.data == nullptr) ok = false;
  if (!ok) fail(op, std::string(spec.name) + ": expected " + expected_text(spec) + ", got " + t.describe());
  if (spec.align > 0) check_alignment(op, t, spec);
}

void check_optional_tensor(const std::string& op, const TensorView& t, const TensorSpec& spec) {
  if (t.defined()) check_tensor(op, t, spec);
}

}  // namespace moe_ep::host
