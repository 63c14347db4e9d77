// CPU reference of every moe_ep operation: the oracle of all GPU tests. Plain C++ on
// std::vector, no CUDA. It sees the whole group at once (inputs of every rank), so one
// call computes what each rank must receive. Bodies favour obviousness over speed.
#pragma once
#include <cstdint>
#include <vector>

namespace moe_ep::reference {

// ---- scalar conversions (bit-exact with the GPU's) --------------------------------
float bf16_to_float(std::uint16_t v);
std::uint16_t float_to_bf16(float v);         // round to nearest even; NaN stays NaN (CUDA's
                                              // canonical 0x7fff, as __float2bfloat16_rn)
float e4m3_to_float(std::uint8_t v);
std::uint8_t float_to_e4m3(float v);          // round to nearest even, saturate to +-448 (satfinite)
                                              // including +-inf; any NaN -> 0x7f (CUDA drops its sign)

// ---- get_dispatch_layout ------------------------------------------------------------
struct Layout {
  std::vector<int> num_tokens_per_rank;       // [num_ranks]
  std::vector<int> num_tokens_per_rdma_rank;  // [num_ranks / num_ranks_per_node]; empty if one node
  std::vector<int> num_tokens_per_expert;     // [num_experts]
  std::vector<std::uint8_t> is_token_in_rank; // [num_tokens, num_ranks] 0/1
};
// topk_idx: [num_tokens, num_topk], -1 = no expert. Experts split evenly and contiguously
// over ranks (rank r holds experts [r*E/R, (r+1)*E/R)). A token counts once per rank and
// once per node however many of its experts live there; once per expert per slot.
// Throws std::invalid_argument on inconsistent sizes or an id outside [-1, num_experts).
Layout get_dispatch_layout(const std::vector<std::int64_t>& topk_idx, int num_tokens, int num_topk,
                           int num_experts, int num_ranks, int num_ranks_per_node);

// ---- high-throughput (intranode) dispatch / combine ---------------------------------
struct DispatchSpec {
  int num_ranks = 1;
  int num_experts = 0;       // divisible by num_ranks
  int num_topk = 0;          // 0: dispatch without top-k (is_token_in_rank given directly)
  int row_bytes = 0;         // payload bytes of one token row (hidden * element size)
  int num_scales = 0;        // fp32 scales per row (FP8 payloads), 0 for BF16
  int expert_alignment = 1;
};
struct RankDispatchInput {
  int num_tokens = 0;
  std::vector<std::uint8_t> x;              // [num_tokens, row_bytes]
  std::vector<float> x_scales;              // [num_tokens, num_scales]
  std::vector<std::int64_t> topk_idx;       // [num_tokens, num_topk] global ids, -1 holes
  std::vector<float> topk_weights;          // [num_tokens, num_topk] (may be empty)
  std::vector<std::uint8_t> is_token_in_rank; // [num_tokens, num_ranks]; used when num_topk == 0,
                                            // otherwise derived from topk_idx
};
struct RankDispatchOutput {
  int num_recv_tokens = 0;
  std::vector<int> rank_prefix_matrix;      // [num_ranks, num_ranks]: [i][j] = tokens ranks 0..i send to j
  std::vector<std::uint8_t> recv_x;         // [num_recv, row_bytes], by source rank then source token
  std::vector<float> recv_x_scales;         // [num_recv, num_scales]
  std::vector<int> recv_src_idx;            // [num_recv] token index on its source rank
  std::vector<int> recv_src_rank;           // [num_recv] source rank
  std::vector<std::int64_t> recv_topk_idx;  // [num_recv, num_topk] local expert id, -1 elsewhere
  std::vector<float> recv_topk_weights;     // [num_recv, num_topk] weight, 0 where idx is -1;
                                            // empty when no rank passes topk_weights
  std::vector<int> num_recv_tokens_per_expert; // [num_local_experts], each rounded up to alignment;
                                            // counted per (token, slot): an expert named in two
                                            // slots of one token counts twice; all 0 if num_topk == 0
};
std::vector<RankDispatchOutput> dispatch(const DispatchSpec& spec,
                                         const std::vector<RankDispatchInput>& inputs);

struct RankCombineInput {
  std::vector<std::uint16_t> x;             // [num_recv, hidden] bf16 (the expert outputs)
  std::vector<float> topk_weights;          // [num_recv, num_topk] (may be empty)
  std::vector<std::uint16_t> bias0, bias1;  // [num_tokens, hidden] bf16 (may be empty)
};
struct RankCombineOutput {
  std::vector<double> combined_x;           // [num_tokens, hidden]
  std::vector<double> combined_topk_weights;// [num_tokens, num_topk]; empty when no rank passes
                                            // topk_weights
};
// The exact inverse routing of `dispatched` (the output of dispatch above): each home
// rank sums, for each of its tokens, the rows returned by every rank it was sent to, plus
// the biases. Unweighted. Weights are summed the same way. inputs[r] holds what rank r
// returns (x, topk_weights aligned with dispatched[r]) and rank r's own biases.
std::vector<RankCombineOutput> combine(int hidden, int num_topk,
                                       const std::vector<RankDispatchOutput>& dispatched,
                                       const std::vector<int>& num_tokens_per_home_rank,
                                       const std::vector<RankCombineInput>& inputs);

// ---- FP8 cast per 128 channels (low-latency dispatch) -------------------------------
// For each group of 128 channels: amax = max(max |x|, 1e-4f);
//   round_scale == false: scale = 448.0f / amax, scale_inv = amax * (1.0f / 448.0f)
//   round_scale == true : e = ceil(log2(amax * (1.0f / 448.0f))) computed exactly from the
//                         float's bits, scale = 2^-e, scale_inv = 2^e
// q = float_to_e4m3(x * scale) (float multiply); the stored scale is scale_inv;
// hidden must be a multiple of 128;
// UE8M0 stores the biased exponent byte of scale_inv, 4 groups per int32 (group g in
// byte g % 4 of word g / 4, little-endian).
struct Fp8Row {
  std::vector<std::uint8_t> q;        // [hidden]
  std::vector<float> scales;          // [hidden / 128] scale_inv
  std::vector<std::int32_t> ue8m0;    // [ceil(hidden / 512)] packed exponents
};
Fp8Row cast_fp8_per_128(const std::uint16_t* x_bf16, int hidden, bool round_scale);

// ---- low-latency dispatch / combine -------------------------------------------------
struct LowLatencySpec {
  int num_ranks = 1;
  int num_experts = 0;
  int num_topk = 0;
  int hidden = 0;                   // multiple of 128
  int num_max_dispatch_tokens_per_rank = 0;
  bool use_fp8 = true;
  bool round_scale = false;
};
struct RankLowLatencyInput {
  int num_tokens = 0;
  std::vector<std::uint16_t> x;     // [num_tokens, hidden] bf16
  std::vector<std::int64_t> topk_idx; // [num_tokens, num_topk]
  std::vector<float> topk_weights;  // [num_tokens, num_topk] (combine)
};
struct LowLatencySlot {             // one valid row of one local expert
  int src_rank = 0;
  int src_token = 0;
  std::vector<std::uint16_t> x_bf16;  // when !use_fp8
  Fp8Row fp8;                         // when use_fp8
};
struct RankLowLatencyOutput {
  // [num_local_experts] lists sorted by (src_rank, src_token); GPU order is not promised,
  // tests compare as sets keyed by (src_rank, src_token).
  std::vector<std::vector<LowLatencySlot>> per_expert;
  std::vector<int> recv_count;      // [num_local_experts]
};
std::vector<RankLowLatencyOutput> low_latency_dispatch(const LowLatencySpec& spec,
                                                       const std::vector<RankLowLatencyInput>& inputs);
// Every valid (token, slot) is one entry on the owner rank of its expert: a token naming
// one expert in two slots has two entries there, matched to the slots in list order.
// expert_out(rank, local_expert, src_rank, src_token) -> bf16 row (hidden values).
// Home rank result: sum over valid k of topk_weights[t][k] * expert_out(row of (t, k)).
struct ExpertOutputs {
  // [owner rank][local expert] -> rows aligned with per_expert[] of the dispatch output
  std::vector<std::vector<std::vector<std::vector<std::uint16_t>>>> rows;
};
std::vector<std::vector<double>> low_latency_combine(const LowLatencySpec& spec,
                                                     const std::vector<RankLowLatencyInput>& inputs,
                                                     const std::vector<RankLowLatencyOutput>& dispatched,
                                                     const ExpertOutputs& expert_outputs);

}  // namespace moe_ep::reference
