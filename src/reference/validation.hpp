// Private helpers of the CPU reference: argument checks that throw std::invalid_argument
// with a message naming the operation, the argument and the value, plus the expert -> rank
// mapping every operation shares (experts split evenly and contiguously over ranks).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "reference/reference.hpp"

namespace moe_ep::reference::detail {

// Throws std::invalid_argument(message) when !ok.
void require(bool ok, const std::string& message);
// Throws unless actual == expected; names `op` and `what` in the message.
void require_size(const std::string& op, const std::string& what, std::size_t actual, std::size_t expected);
// Experts per rank; throws unless num_ranks > 0 and num_experts >= 0 is divisible by it.
int num_local_experts(const std::string& op, int num_experts, int num_ranks);
// Checks topk_idx is [num_tokens, num_topk] with every id in [-1, num_experts); names
// the token, slot and value of the first bad id.
void check_topk_idx(const std::string& op, const std::vector<std::int64_t>& topk_idx, int num_tokens,
                    int num_topk, int num_experts);
// Rounds count up to a multiple of alignment (alignment >= 1).
int round_up(int count, int alignment);
// Checks a low-latency spec and the per-rank inputs against it (x, topk_idx, the token
// cap, and topk_weights when with_weights); returns the number of local experts.
int check_low_latency_inputs(const std::string& op, const LowLatencySpec& spec,
                             const std::vector<RankLowLatencyInput>& inputs, bool with_weights);

}  // namespace moe_ep::reference::detail
