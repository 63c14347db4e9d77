"""CPU-only checks (CI, no GPU, no torch needed): the native module loads, the package
imports, Config and the Buffer methods match deep_ep's surface, errors map to the right
Python types, and a Buffer without a CUDA device says so."""
import importlib.util
import inspect
import threading

import pytest

import moe_ep
from moe_ep import _C

HAS_TORCH = importlib.util.find_spec("torch") is not None
EMPTY = inspect.Parameter.empty


def test_native_module_loads():
    for name in ("Buffer", "Group", "Event", "Config", "TensorView", "view", "DispatchArgs", "CombineArgs",
                 "LayoutArgs", "DispatchHandle", "DispatchOutputs", "StreamOptions", "make_in_process_group",
                 "make_process_group", "num_cuda_devices", "keep_pool_memory", "LowLatencyHandle",
                 "LowLatencyDispatchArgs", "LowLatencyDispatchOutputs", "LowLatencyCombineArgs", "LowLatencyHook",
                 "LowLatencyCall", "DispatchCounts"):
        assert hasattr(_C, name), name
    assert _C.DEFAULT_TIMEOUT_NS > 0
    assert _C.MAX_LOW_LATENCY_TOKENS == 1024
    for method in ("low_latency_dispatch", "low_latency_combine", "next_low_latency_combine_buffer",
                   "clean_low_latency_buffer", "low_latency_update_mask", "low_latency_query_mask",
                   "low_latency_clean_mask", "low_latency_size_hint", "num_rdma_bytes"):
        assert hasattr(_C.Buffer, method), method
    for method in ("num_ranks_per_node", "is_internode", "internode_size_hint"):
        assert hasattr(_C.Buffer, method), method
    for field in ("rdma_send_pos", "forwarded_prefix", "forward_rows", "num_forward_rows"):
        assert hasattr(_C.DispatchHandle, field), field
    assert hasattr(_C.DispatchCounts, "num_forward_rows") and hasattr(_C.DispatchArgs, "num_tokens_per_rdma_rank")


def test_package_exports_deep_ep_names():
    for name in ("Buffer", "Config", "EventOverlap"):
        assert hasattr(moe_ep, name)
    if HAS_TORCH:
        import torch
        assert moe_ep.topk_idx_t is torch.int64
    else:
        with pytest.raises(ImportError, match="needs PyTorch"):
            moe_ep.topk_idx_t


def test_config_defaults_match_deep_ep():
    config = moe_ep.Config()
    assert (config.num_sms, config.num_max_nvl_chunked_send_tokens, config.num_max_nvl_chunked_recv_tokens,
            config.num_max_rdma_chunked_send_tokens, config.num_max_rdma_chunked_recv_tokens) == (20, 6, 256, 6, 256)
    positional = moe_ep.Config(24, 8, 128, 4, 64)
    assert (positional.num_sms, positional.num_max_nvl_chunked_send_tokens, positional.num_max_nvl_chunked_recv_tokens,
            positional.num_max_rdma_chunked_send_tokens, positional.num_max_rdma_chunked_recv_tokens) == \
        (24, 8, 128, 4, 64)
    assert config.get_nvl_buffer_size_hint(7168 * 2, 8) > 0
    assert config.get_rdma_buffer_size_hint(7168 * 2, 8) >= 0
    assert moe_ep.Buffer.get_dispatch_config(8).num_sms > 0
    assert moe_ep.Buffer.get_combine_config(8).num_sms > 0


# (method, [(argument, default or EMPTY), ...]) as DEEP_EP_V1_API.md lists them.
DISPATCH_ARGS = [("x", EMPTY), ("handle", None), ("num_tokens_per_rank", None), ("num_tokens_per_rdma_rank", None),
                 ("is_token_in_rank", None), ("num_tokens_per_expert", None), ("topk_idx", None),
                 ("topk_weights", None), ("expert_alignment", 1), ("num_worst_tokens", 0), ("config", None),
                 ("previous_event", None), ("async_finish", False), ("allocate_on_comm_stream", False)]
COMBINE_ARGS = [("x", EMPTY), ("handle", EMPTY), ("topk_weights", None), ("bias", None), ("config", None),
                ("previous_event", None), ("async_finish", False), ("allocate_on_comm_stream", False)]
SIGNATURES = {
    "__init__": [("group", EMPTY), ("num_nvl_bytes", 0), ("num_rdma_bytes", 0), ("low_latency_mode", False),
                 ("num_qps_per_rank", 24), ("allow_nvlink_for_low_latency_mode", True), ("allow_mnnvl", False),
                 ("use_fabric", False), ("explicitly_destroy", False), ("enable_shrink", False), ("comm", None)],
    "destroy": [],
    "get_comm_stream": [],
    "get_local_buffer_tensor": [("dtype", EMPTY), ("size", None), ("offset", 0), ("use_rdma_buffer", False)],
    "get_dispatch_layout": [("topk_idx", EMPTY), ("num_experts", EMPTY), ("previous_event", None),
                            ("async_finish", False), ("allocate_on_comm_stream", False)],
    "dispatch": DISPATCH_ARGS,
    "combine": COMBINE_ARGS,
    "internode_dispatch": DISPATCH_ARGS,
    "internode_combine": COMBINE_ARGS,
    "clean_low_latency_buffer": [("num_max_dispatch_tokens_per_rank", EMPTY), ("hidden", EMPTY),
                                 ("num_experts", EMPTY)],
    "low_latency_dispatch": [("x", EMPTY), ("topk_idx", EMPTY), ("num_max_dispatch_tokens_per_rank", EMPTY),
                             ("num_experts", EMPTY), ("cumulative_local_expert_recv_stats", None),
                             ("dispatch_wait_recv_cost_stats", None), ("use_fp8", True), ("round_scale", False),
                             ("use_ue8m0", False), ("async_finish", False), ("return_recv_hook", False)],
    "low_latency_combine": [("x", EMPTY), ("topk_idx", EMPTY), ("topk_weights", EMPTY), ("handle", EMPTY),
                            ("use_logfmt", False), ("zero_copy", False), ("async_finish", False),
                            ("return_recv_hook", False), ("out", None), ("combine_wait_recv_cost_stats", None)],
    "low_latency_update_mask_buffer": [("rank_to_mask", EMPTY), ("mask", False)],
    "low_latency_query_mask_buffer": [("mask_status", EMPTY)],
    "low_latency_clean_mask_buffer": [],
    "get_next_low_latency_combine_buffer": [("handle", EMPTY)],
}
STATIC_SIGNATURES = {
    "is_sm90_compiled": [],
    "set_num_sms": [("new_num_sms", EMPTY)],
    "capture": [],
    "get_low_latency_rdma_size_hint": [("num_max_dispatch_tokens_per_rank", EMPTY), ("hidden", EMPTY),
                                       ("num_ranks", EMPTY), ("num_experts", EMPTY)],
    "get_dispatch_config": [("num_ranks", EMPTY)],
    "get_combine_config": [("num_ranks", EMPTY)],
}


def _positional(function, skip_self):
    params = [p for p in inspect.signature(function).parameters.values() if p.kind != p.KEYWORD_ONLY]
    return [(p.name, p.default) for p in params[1 if skip_self else 0:]]


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_method_signature_matches_deep_ep(name):
    assert _positional(getattr(moe_ep.Buffer, name), skip_self=True) == SIGNATURES[name]


@pytest.mark.parametrize("name", sorted(STATIC_SIGNATURES))
def test_static_method_matches_deep_ep(name):
    assert isinstance(inspect.getattr_static(moe_ep.Buffer, name), staticmethod)
    assert _positional(getattr(moe_ep.Buffer, name), skip_self=False) == STATIC_SIGNATURES[name]


def test_buffer_num_sms_attribute():
    assert moe_ep.Buffer.num_sms == 20


def test_internode_methods_refuse_one_node_and_forward_across_nodes():
    buffer = object.__new__(moe_ep.Buffer)  # no device needed: these refuse before touching it
    with pytest.raises(NotImplementedError, match="internode_dispatch .*call Buffer.dispatch"):
        buffer.internode_dispatch(None)
    with pytest.raises(NotImplementedError, match="internode_combine .*call Buffer.combine"):
        buffer.internode_combine(None, None)
    with pytest.raises(NotImplementedError, match="get_local_buffer_tensor"):
        buffer.get_local_buffer_tensor(None)
    spanning = object.__new__(moe_ep.Buffer)  # a buffer whose ranks span nodes: deep_ep's calls forward
    spanning._num_nodes, spanning.low_latency_mode = 2, False
    spanning.dispatch = lambda *args: ("dispatch", args)
    spanning.combine = lambda *args: ("combine", args)
    assert spanning.internode_dispatch("x") == ("dispatch", ("x",) + tuple(
        p.default for p in list(inspect.signature(moe_ep.Buffer.internode_dispatch).parameters.values())[2:]))
    assert spanning.internode_combine("x", "h")[0] == "combine"


def test_low_latency_rdma_size_hint():
    small = moe_ep.Buffer.get_low_latency_rdma_size_hint(128, 7168, 8, 256)
    assert isinstance(small, int) and small > 2 * 128 * 7168 * 2  # two halves of at least T bf16 rows
    assert moe_ep.Buffer.get_low_latency_rdma_size_hint(256, 7168, 8, 256) > small
    assert moe_ep.Buffer.get_low_latency_rdma_size_hint(128, 4096, 8, 256) < small


def test_low_latency_mask_calls_need_enable_shrink():
    buffer = object.__new__(moe_ep.Buffer)
    buffer.enable_shrink, buffer.runtime = False, None
    with pytest.raises(ValueError, match="enable_shrink"):
        buffer.low_latency_update_mask_buffer(1, True)
    with pytest.raises(ValueError, match="enable_shrink"):
        buffer.low_latency_query_mask_buffer(None)
    with pytest.raises(ValueError, match="enable_shrink"):
        buffer.low_latency_clean_mask_buffer()


class _Referent:
    """A weak-referenceable stand-in for a tensor (the handle logic needs no device)."""


def _fake_native(**fields):
    native = _C.LowLatencyHandle()
    for name, value in dict(num_max_dispatch_tokens_per_rank=128, hidden=7168, num_experts=16, num_topk=8,
                            num_tokens=100, buffer_id=3, buffer_generation=1, **fields).items():
        setattr(native, name, value)
    return native


def test_low_latency_handle_is_deep_ep_5_tuple():
    from moe_ep import low_latency_handle as llh
    src_info, layout_range, combine_slots = _Referent(), _Referent(), _Referent()
    handle = llh.pack(src_info, layout_range, combine_slots, _fake_native())
    assert isinstance(handle, tuple) and len(handle) == 5
    assert handle[0] is src_info and handle[1] is layout_range and handle[2:] == (128, 7168, 16)
    a, b, num_max_dispatch_tokens_per_rank, hidden, num_experts = handle
    assert (num_max_dispatch_tokens_per_rank, hidden, num_experts) == (128, 7168, 16)
    assert handle.combine_slots is combine_slots
    assert (handle.num_topk, handle.num_tokens, handle.buffer_id, handle.buffer_generation) == (8, 100, 3, 1)
    import copy
    assert copy.copy(handle) is handle and copy.deepcopy(handle) is handle
    assert "num_topk=8" in repr(handle)
    # A repacked plain tuple of the same tensors finds its extras again; anything else is refused.
    found = llh._find((a, b, num_max_dispatch_tokens_per_rank, hidden, num_experts), "combine")
    assert isinstance(found, llh.LowLatencyHandle) and found.combine_slots is combine_slots
    with pytest.raises(ValueError, match="not made by moe_ep"):
        llh._find((a, _Referent(), 128, 7168, 16), "combine")
    with pytest.raises(ValueError, match="not made by moe_ep"):
        llh._find((a, b, 64, 7168, 16), "combine")
    with pytest.raises(ValueError, match="not made by moe_ep"):
        llh._find((_Referent(), b, 128, 7168, 16), "combine")
    with pytest.raises(ValueError, match="5-tuple"):
        llh._find((a, b, 128), "combine")
    # The registry holds no tensor: it forgets a dispatch once its src_info is gone.
    key = id(src_info)
    del handle, found, a, src_info
    import gc
    gc.collect()
    assert key not in llh._by_src_info


class _CpuMeta:
    """A CPU int64 tensor stand-in for a dispatch handle's meta slot (no torch needed)."""
    is_cuda, device = False, "cpu"

    def __init__(self, *values):
        self.shape, self._values = (len(values),), list(values)

    def tolist(self):
        return list(self._values)


def test_dispatch_handle_unpack_takes_the_6_and_10_tuples():
    from moe_ep import handle as h
    internode = (None, _CpuMeta(3, 1, 40, 20, 70)) + (None,) * 8
    native, tensors = h.unpack(internode, internode=True)
    assert (native.buffer_id, native.buffer_generation, native.num_recv_rows, native.num_tokens,
            native.num_forward_rows) == (3, 1, 40, 20, 70)
    assert len(tensors) == 7 and not native.forward_rows.defined
    intranode = (None, _CpuMeta(3, 1, 40, 20)) + (None,) * 4
    native, tensors = h.unpack(intranode, internode=False)
    assert (native.num_recv_rows, native.num_tokens, native.num_forward_rows, len(tensors)) == (40, 20, 0, 4)
    with pytest.raises(ValueError, match=r"6-tuple \(intranode\) or 10-tuple \(internode\).*tuple of 7"):
        h.unpack((None,) * 7)
    with pytest.raises(ValueError, match="got NoneType"):
        h.unpack(None)
    with pytest.raises(ValueError, match="slot 1 of the internode 10-tuple is not moe_ep's CPU"):
        h.unpack((None,) * 10)
    with pytest.raises(ValueError, match="slot 1 of the internode 10-tuple"):  # an intranode meta
        h.unpack((None, _CpuMeta(3, 1, 40, 20)) + (None,) * 8)
    with pytest.raises(ValueError, match="an internode 10-tuple given to a buffer"):
        h.unpack(internode, internode=False)
    with pytest.raises(ValueError, match="an intranode 6-tuple given to a buffer"):
        h.unpack(intranode, internode=True)
    with pytest.raises(ValueError, match=r"handle\[8\] \(rdma_send_pos\) must be a CUDA tensor"):
        h.unpack(internode[:8] + (_CpuMeta(1),) + internode[9:])


@pytest.mark.skipif(not HAS_TORCH, reason="pack makes the meta tensor with torch")
def test_dispatch_handle_pack_slots_match_deep_ep():
    import torch

    from moe_ep import handle as h
    native = _C.DispatchHandle()
    native.buffer_id, native.buffer_generation, native.num_recv_rows, native.num_tokens = 3, 1, 40, 20
    native.num_forward_rows = 70
    t = {name: _Referent() for name in ("is_token_in_rank", "rank_prefix_matrix", "send_pos", "recv_src_idx",
                                        "rdma_send_pos", "forwarded_prefix", "forward_rows")}
    handle = h.pack(torch, native, t)
    assert handle[0] is t["is_token_in_rank"] and handle[2] is t["rank_prefix_matrix"]
    assert handle[3] is None and handle[4] is t["forwarded_prefix"] and handle[5] is t["send_pos"]
    assert handle[6] is None and handle[7] is t["recv_src_idx"]
    assert handle[8] is t["rdma_send_pos"] and handle[9] is t["forward_rows"]
    assert handle[1].tolist() == [3, 1, 40, 20, 70] and not handle[1].is_cuda
    del t["rdma_send_pos"], t["forwarded_prefix"], t["forward_rows"]
    handle = h.pack(torch, native, t)
    assert handle[0] is t["rank_prefix_matrix"] and handle[2] is None and handle[3] is t["recv_src_idx"]
    assert handle[4] is t["is_token_in_rank"] and handle[5] is t["send_pos"]
    assert handle[1].tolist() == [3, 1, 40, 20]


def test_internode_size_hint():
    small = moe_ep.Buffer.get_internode_rdma_size_hint(128, 7168, 16, 8)
    assert isinstance(small, int) and small > 0
    assert moe_ep.Buffer.get_internode_rdma_size_hint(256, 7168, 16, 8) > small
    assert moe_ep.Buffer.get_internode_rdma_size_hint(128, 7168, 16, 8, num_topk=8) <= small
    with pytest.raises(ValueError, match="must divide"):
        moe_ep.Buffer.get_internode_rdma_size_hint(128, 7168, 16, 3)


def test_low_latency_hook_runs_once_and_releases_tensors():
    from moe_ep.low_latency import _Hook
    calls = []
    hook = _Hook(lambda: calls.append(1), (_Referent(),), "low_latency_dispatch")
    hook()
    assert calls == [1] and hook._keep is None
    with pytest.raises(RuntimeError, match="already called"):
        hook()
    skipped = _Hook(_C.LowLatencyHook(), (), "low_latency_combine")  # a call that launched nothing
    skipped()
    with pytest.raises(RuntimeError, match="already called"):
        skipped()


def test_event_overlap_basics():
    overlap = moe_ep.EventOverlap()
    assert overlap.event is None and overlap.extra_tensors is None
    with overlap:  # nothing to wait for
        pass
    with pytest.raises(ValueError, match="no event"):
        overlap.current_stream_wait()


@pytest.mark.skipif(_C.num_cuda_devices() > 0, reason="this machine has a CUDA device")
def test_buffer_without_cuda_device_raises():
    with pytest.raises(RuntimeError, match="no CUDA device"):
        moe_ep.Buffer(None, 1 << 20)
    group = _C.make_in_process_group([0])[0]
    with pytest.raises(RuntimeError, match="no CUDA device"):
        _C.Buffer(group, 1 << 20)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        moe_ep.Buffer(group, 1 << 20)


def test_invalid_argument_maps_to_value_error():
    with pytest.raises(ValueError, match="rank 5 outside"):
        _C.make_process_group(5, 2, 0, lambda data: data)


def test_process_group_allgather_callback():
    # barrier() releases the GIL, then allgathers one byte through the Python callable.
    calls = []
    group = _C.make_process_group(0, 2, 0, lambda data: calls.append(data) or data * 2)
    group.barrier()
    assert calls == [b"\x00"]
    short = _C.make_process_group(0, 2, 0, lambda data: data)
    with pytest.raises(ValueError, match="returned 1 bytes"):
        short.barrier()

    def failing(data):
        raise KeyError("peer vanished")

    with pytest.raises(RuntimeError, match="peer vanished"):
        _C.make_process_group(0, 1, 0, failing).barrier()


def test_a_process_group_of_one_rank_shares_its_address_space():
    # Its one rank is in this process: the in-place paths (a rank alone's kernels), as
    # deep_ep's one-process tests run, instead of staging for peers that do not exist.
    assert _C.make_process_group(0, 1, 0, lambda data: data).shares_address_space
    assert not _C.make_process_group(0, 2, 0, lambda data: data).shares_address_space


def test_in_process_group_releases_gil():
    # Two ranks meet in a host barrier from two threads: a held GIL would time out instead.
    groups = _C.make_in_process_group([0, 0], timeout_s=20.0)
    errors = []

    def rank(r):
        try:
            groups[r].barrier()
        except Exception as error:  # noqa: BLE001 - checked below
            errors.append(error)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [g.rank for g in groups] == [0, 1] and groups[0].shares_address_space


def test_run_threads_reports_each_failing_rank():
    from moe_ep import testing
    assert testing.run_threads(3, lambda rank: rank * 10) == [0, 10, 20]

    def body(rank):
        if rank == 1:
            raise ValueError("bad rank")
        return rank

    with pytest.raises(testing.RankFailure, match="rank 1: ValueError: bad rank") as failure:
        testing.run_threads(3, body)
    assert set(failure.value.errors) == {1}
