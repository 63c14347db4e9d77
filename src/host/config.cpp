// deep_ep-compatible Config size hints and the tuned defaults per rank count.
#include "moe_ep/config.hpp"

#include "moe_ep/buffer.hpp"

namespace moe_ep {

// deep_ep sizes its ring buffers from the chunk fields; our buffer holds send lists (and,
// for process groups, staging), so the hint is the size for
// num_max_nvl_chunked_recv_tokens * 64 tokens per rank (16384 with the defaults). Use
// Buffer::intranode_size_hint for an exact size.
std::int64_t Config::get_nvl_buffer_size_hint(std::int64_t hidden_bytes, int num_ranks) const {
  return Buffer::intranode_size_hint(static_cast<std::int64_t>(num_max_nvl_chunked_recv_tokens) * 64, num_ranks,
                                     hidden_bytes);
}

std::int64_t Config::get_rdma_buffer_size_hint(std::int64_t hidden_bytes, int num_ranks) const {
  // As deep_ep: no RDMA buffer within one NVLink domain. Across nodes of kMaxNvlRanks, the
  // window for calls of up to 16 chunks of received tokens per rank (a call's tokens must
  // fit it: there is no chunked pipeline yet); Buffer::internode_size_hint for other sizes.
  if (num_ranks <= kMaxNvlRanks || num_ranks % kMaxNvlRanks != 0) return 0;
  return Buffer::internode_size_hint(static_cast<std::int64_t>(num_max_rdma_chunked_recv_tokens) * 16,
                                     (hidden_bytes + 1) / 2, num_ranks, kMaxNvlRanks);
}

// One GPU per rank: 24 SMs move NVLink traffic at line rate (the deep_ep measurements
// in BENCHMARKS.md); ranks sharing a device are capped by Buffer::max_num_sms.
Config get_dispatch_config(int /*num_ranks*/) { return Config{24, 6, 256, 6, 256}; }
Config get_combine_config(int /*num_ranks*/) { return Config{24, 6, 256, 6, 256}; }

}  // namespace moe_ep
