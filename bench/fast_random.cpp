// xorshift payloads and splitmix64 seeds (see fast_random.hpp).
#include "fast_random.hpp"

namespace moe_ep::bench {

std::vector<std::uint16_t> fast_bf16(std::uint64_t seed, std::size_t count) {
  std::vector<std::uint16_t> v(count);
  std::uint64_t x = seed | 1;
  for (auto& e : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    e = static_cast<std::uint16_t>(0x3f00u | (x & 0x80ffu));  // exponent 126, random sign and mantissa
  }
  return v;
}

std::vector<std::uint8_t> fast_e4m3(std::uint64_t seed, std::size_t count) {
  std::vector<std::uint8_t> v(count);
  std::uint64_t x = seed | 1;
  for (auto& e : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    e = static_cast<std::uint8_t>(0x30u | (x & 0x8fu));  // exponent bits 0110: finite, non-zero
  }
  return v;
}

std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t index) {
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ull * (index + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace moe_ep::bench
