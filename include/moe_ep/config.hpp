// Tuning knobs of one dispatch/combine call (deep_ep's Config, same constructor fields)
// and the bounds of the buffer. Our kernels pull rows directly, so the chunk fields are
// accepted for compatibility and only num_sms steers the launch.
#pragma once
#include <cstdint>

namespace moe_ep {

// Ranks reachable by peer memory in one buffer (the NVLink domain); one named constant.
inline constexpr int kMaxNvlRanks = 8;
// Layout and the host API count up to this many ranks (ranks beyond the NVLink domain
// are reached through the RDMA transport).
inline constexpr int kMaxRanks = 1024;
// Ranks of one buffer across nodes (internode high throughput; nodes of up to
// kMaxNvlRanks). Bounded by the transport's signal slots (ranks + 3 x nodes).
inline constexpr int kMaxInternodeRanks = 256;
inline constexpr int kMaxTopk = 16;
inline constexpr int kMaxExperts = 4096;
// Default bound of every device wait.
inline constexpr std::uint64_t kDefaultTimeoutNs = 5'000'000'000ull;

struct Config {
  int num_sms = 20;
  int num_max_nvl_chunked_send_tokens = 6;
  int num_max_nvl_chunked_recv_tokens = 256;
  int num_max_rdma_chunked_send_tokens = 6;
  int num_max_rdma_chunked_recv_tokens = 256;

  // Bytes of the peer-memory buffer that a call with this config needs for rows of
  // hidden_bytes (deep_ep's hint; ours depends on tokens, see Buffer size hints).
  std::int64_t get_nvl_buffer_size_hint(std::int64_t hidden_bytes, int num_ranks) const;
  std::int64_t get_rdma_buffer_size_hint(std::int64_t hidden_bytes, int num_ranks) const;
};

// Tuned defaults by rank count (deep_ep's get_dispatch_config / get_combine_config).
Config get_dispatch_config(int num_ranks);
Config get_combine_config(int num_ranks);

}  // namespace moe_ep
