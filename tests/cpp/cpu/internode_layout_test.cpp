// The internode window carve: regions in order, aligned, inside the window, and the size
// hint gives a window whose capacities hold the tokens it was asked for.
#include <gtest/gtest.h>

#include "moe_ep/buffer.hpp"
#include "protocol/internode_layout.hpp"

namespace moe_ep::protocol {
namespace {

struct Shape {
  int num_ranks, num_nodes, num_topk;
  std::int64_t hidden;
};

const Shape kShapes[] = {{2, 2, 8, 2048}, {8, 2, 8, 7168}, {8, 4, 16, 7168}, {4, 2, 1, 128}, {8, 8, 0, 16384}};

TEST(InternodeLayout, WindowRegionsInOrderAndAligned) {
  for (const Shape& s : kShapes) {
    const std::int64_t bytes = std::int64_t{64} << 20;
    const InternodeWindow w = carve_internode_window(bytes, s.num_ranks, s.num_nodes);
    EXPECT_EQ(w.counts_offset, transport::kSignalBytes);
    EXPECT_GE(w.shapes_offset, w.counts_offset + 4LL * (s.num_ranks + 1) * w.counts.row_ints());
    EXPECT_EQ(w.shapes_offset % 16, 0);
    EXPECT_GE(w.half_offset[0], w.shapes_offset + 16LL * (s.num_ranks + 1));
    EXPECT_EQ(w.counts.row_ints() % 4, 0);  // rows are put whole: 16-byte multiples
    EXPECT_GE(w.counts.row_ints(), w.counts.per_expert() + kMaxExperts);
    EXPECT_EQ(w.half_offset[0] % 128, 0);
    EXPECT_EQ(w.half_offset[1], w.half_offset[0] + w.half_bytes);
    EXPECT_LE(w.total_bytes, bytes);
    EXPECT_GT(w.half_bytes, 0);
  }
  EXPECT_EQ(carve_internode_window(4096, 8, 2).half_bytes, 0);  // too small: nothing to carve
}

TEST(InternodeLayout, DispatchAndCombineStayInTheirHalves) {
  for (const Shape& s : kShapes) {
    const InternodeWindow w = carve_internode_window(std::int64_t{256} << 20, s.num_ranks, s.num_nodes);
    const int per_node = s.num_ranks / s.num_nodes;
    for (const bool fp8 : {false, true}) {
      const std::int64_t row = fp8 ? s.hidden : 2 * s.hidden;
      const InternodeDispatchCarve d = carve_internode_dispatch(w, row, fp8 ? s.hidden / 128 : 0, s.num_topk, per_node);
      EXPECT_GT(d.capacity, 0);
      EXPECT_EQ(d.record.bytes % 16, 0);
      EXPECT_EQ(d.record.positions_bytes % 16, 0);
      EXPECT_GE(d.record.positions_bytes, 4 * per_node);
      EXPECT_EQ(d.stage(0), w.half_offset[0]);
      EXPECT_LE(d.stage(d.capacity), d.positions_stage(0, 0, s.num_nodes));
      EXPECT_LE(d.positions_stage(d.capacity, 0, s.num_nodes), d.recv(0, 0));
      EXPECT_LE(d.recv(s.num_nodes - 1, d.capacity), w.half_offset[1]);
      EXPECT_EQ(d.recv(1 % s.num_nodes, 1) % 16, 0);
    }
    const InternodeCombineCarve c = carve_internode_combine(w, s.hidden, s.num_topk);
    EXPECT_GT(c.capacity, 0);
    EXPECT_EQ(c.record_bytes % 16, 0);
    EXPECT_GE(c.record_bytes, 2 * s.hidden + 4 * s.num_topk);
    EXPECT_EQ(c.stage(0, 0), w.half_offset[1]);
    EXPECT_LE(c.stage(s.num_nodes - 1, c.capacity), c.recv(0, 0));
    EXPECT_LE(c.recv(s.num_nodes - 1, c.capacity), w.total_bytes);
  }
}

TEST(InternodeLayout, SizeHintHoldsTheTokensItWasAskedFor) {
  for (const Shape& s : kShapes) {
    const int per_node = s.num_ranks / s.num_nodes;
    for (const std::int64_t tokens : {1, 128, 4096}) {
      const std::int64_t bytes = Buffer::internode_size_hint(tokens, s.hidden, s.num_ranks, per_node, s.num_topk);
      const InternodeWindow w = carve_internode_window(bytes, s.num_ranks, s.num_nodes);
      EXPECT_GE(carve_internode_dispatch(w, 2 * s.hidden, 0, s.num_topk, per_node).capacity, tokens);
      EXPECT_GE(carve_internode_dispatch(w, s.hidden, s.hidden / 128, s.num_topk, per_node).capacity, tokens);
      EXPECT_GE(carve_internode_combine(w, s.hidden, s.num_topk).capacity, tokens);
    }
  }
}

TEST(InternodeLayout, SignalSlotsAreDistinct) {
  const InternodeSlots slots{8, 2};
  EXPECT_EQ(slots.counts_from(7), 7);
  EXPECT_EQ(slots.dispatch_data_from(0), 8);
  EXPECT_EQ(slots.combine_ready_from(0), 10);
  EXPECT_EQ(slots.combine_data_from(1), 13);
  EXPECT_EQ(slots.total(), 14);
  EXPECT_LE((InternodeSlots{256, 32}.total()), transport::kMaxSignals);
}

}  // namespace
}  // namespace moe_ep::protocol
