// Element types that cross the public API. Values match DLPack (code << 8 | bits) so the
// Python binding converts without tables.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace moe_ep {

enum class DType : std::uint16_t {
  kBool = (6u << 8) | 8,      // kDLBool
  kInt32 = (0u << 8) | 32,    // kDLInt
  kInt64 = (0u << 8) | 64,
  kFloat32 = (2u << 8) | 32,  // kDLFloat
  kBFloat16 = (4u << 8) | 16, // kDLBfloat
  kFloat8E4M3 = (10u << 8) | 8, // kDLFloat8_e4m3fn
};

constexpr std::size_t dtype_bytes(DType t) { return (static_cast<unsigned>(t) & 0xffu) / 8; }

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kBool: return "bool";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kFloat32: return "float32";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat8E4M3: return "float8_e4m3fn";
  }
  return "unknown";
}

}  // namespace moe_ep
