// What a dispatch leaves behind (DispatchHandle), its host-visible counts (DispatchCounts)
// and the caller-allocated receive tensors (DispatchOutputs), as in intranode.hpp.
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "moe_ep/intranode.hpp"

namespace moe_ep::bindings {

void bind_dispatch_handle(nb::module_& m) {
  nb::class_<DispatchHandle>(m, "DispatchHandle")
      .def(nb::init<>())
      .def_rw("rank_prefix_matrix", &DispatchHandle::rank_prefix_matrix)
      .def_rw("is_token_in_rank", &DispatchHandle::is_token_in_rank)
      .def_rw("send_pos", &DispatchHandle::send_pos)
      .def_rw("recv_src_idx", &DispatchHandle::recv_src_idx)
      .def_rw("rdma_send_pos", &DispatchHandle::rdma_send_pos)        // internode: [num_tokens, num_nodes]
      .def_rw("forwarded_prefix", &DispatchHandle::forwarded_prefix)  // internode: [num_nodes]
      .def_rw("forward_rows", &DispatchHandle::forward_rows)          // internode: [num_forward_rows, per node]
      .def_rw("num_forward_rows", &DispatchHandle::num_forward_rows)
      .def_rw("num_tokens", &DispatchHandle::num_tokens)
      .def_rw("num_recv_rows", &DispatchHandle::num_recv_rows)
      .def_rw("buffer_id", &DispatchHandle::buffer_id)
      .def_rw("buffer_generation", &DispatchHandle::buffer_generation);

  nb::class_<DispatchCounts>(m, "DispatchCounts")
      .def_ro("num_recv_tokens", &DispatchCounts::num_recv_tokens)
      .def_ro("num_recv_tokens_per_expert", &DispatchCounts::num_recv_tokens_per_expert)
      .def_ro("num_recv_rows", &DispatchCounts::num_recv_rows)
      .def_ro("num_forward_rows", &DispatchCounts::num_forward_rows);

  nb::class_<DispatchOutputs>(m, "DispatchOutputs")
      .def(nb::init<>())
      .def_rw("recv_x", &DispatchOutputs::recv_x)
      .def_rw("recv_x_scales", &DispatchOutputs::recv_x_scales)
      .def_rw("recv_topk_idx", &DispatchOutputs::recv_topk_idx)
      .def_rw("recv_topk_weights", &DispatchOutputs::recv_topk_weights);
}

}  // namespace moe_ep::bindings
