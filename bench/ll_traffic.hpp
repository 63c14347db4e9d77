// Bytes a low-latency round moves, from the routing of a workload (averaged over its
// input sets): the HBM floor on one shared GPU, DeepEP's logical bytes, and the bytes our
// design sends per token (each token read once per destination rank).
#pragma once
#include "ll_workload.hpp"

namespace moe_ep::bench {

struct LlTraffic {
  double pairs_per_rank = 0;        // valid (token, expert) pairs a rank sends, mean over ranks
  double tokens_per_rank = 0;       // tokens with at least one valid expert, mean over ranks
  double dest_ranks_per_token = 0;  // distinct destination ranks of a token, mean
  // Summed over ranks, what cannot be avoided. Dispatch: one slot written per pair plus
  // each token read once; combine: each pair's bf16 row read plus each token written once.
  double dispatch_floor_bytes = 0;
  double combine_floor_bytes = 0;
  // Per rank, DeepEP's LL accounting (BENCHMARKS.md): per valid pair hidden + hidden/32 + 16
  // for FP8 dispatch (2 * hidden for BF16), 2 * hidden for combine.
  double dispatch_logical_bytes = 0;
  double combine_logical_bytes = 0;
  double sent_bytes_per_token = 0;  // dest_ranks_per_token * slot bytes
  double topk_hidden_bytes = 0;     // top-k * hidden payload bytes (one message per slot)
};

LlTraffic ll_traffic(const LlWorkload& workload);

}  // namespace moe_ep::bench
