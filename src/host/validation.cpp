// Tensor checks with messages that name the argument, the expectation and the value.
#include "host/validation.hpp"

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
}

void check_optional_tensor(const std::string& op, const TensorView& t, const TensorSpec& spec) {
  if (t.defined()) check_tensor(op, t, spec);
}

}  // namespace moe_ep::host
