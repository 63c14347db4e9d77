// Host-side argument checks run before any launch. Each failure throws InvalidArgument
// naming the operation, the argument, what was expected and what was given.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include "moe_ep/errors.hpp"
#include "moe_ep/tensor_view.hpp"

namespace moe_ep::host {

inline constexpr std::int64_t kAnySize = -1;

[[noreturn]] void fail(const std::string& op, const std::string& message);
inline void require(bool condition, const std::string& op, const std::string& message) {
  if (!condition) fail(op, message);
}

struct TensorSpec {
  const char* name;
  std::initializer_list<DType> dtypes;
  std::initializer_list<std::int64_t> shape;  // kAnySize matches anything
  bool contiguous = true;
  // Bytes the data pointer (and, when not contiguous, every stride but the last
  // dimension's) must be a multiple of: kernels move this tensor's rows in vectors of that
  // width. 0: the element's own.
  int align = 0;
};

// Rows that kernels move in 16-byte vectors.
inline constexpr int kRowAlign = 16;

// The tensor must be given and match `spec`.
void check_tensor(const std::string& op, const TensorView& t, const TensorSpec& spec);
// The tensor may be absent; when given it must match `spec`.
void check_optional_tensor(const std::string& op, const TensorView& t, const TensorSpec& spec);

}  // namespace moe_ep::host
