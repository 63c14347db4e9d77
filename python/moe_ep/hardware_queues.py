"""CUDA_DEVICE_MAX_CONNECTIONS: in-process ranks sharing one GPU need 2*ranks+2 hardware
queues, and CUDA reads the variable once, when it creates its context. Importing moe_ep sets
32 (CUDA's maximum) unless the user chose a value, and remembers whether torch had already
initialized CUDA, in which case the setting came too late (check_in_process says so)."""
import os
import sys

WANTED = 32
_user_value = os.environ.get("CUDA_DEVICE_MAX_CONNECTIONS")
_torch = sys.modules.get("torch")
_cuda_initialized_first = bool(
    _torch is not None and hasattr(_torch, "cuda") and _torch.cuda.is_initialized())
os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", str(WANTED))


def check_in_process(num_ranks_on_device):
    """Raises if ranks share a device but CUDA started before moe_ep could set the variable."""
    if num_ranks_on_device > 1 and _user_value is None and _cuda_initialized_first:
        raise RuntimeError(
            f"moe_ep: {num_ranks_on_device} in-process ranks share a GPU, but torch initialized CUDA "
            f"before `import moe_ep`, so CUDA_DEVICE_MAX_CONNECTIONS={WANTED} came too late (CUDA's "
            f"default of 8 queues serializes the ranks' kernels). Import moe_ep before creating CUDA "
            f"tensors, or export CUDA_DEVICE_MAX_CONNECTIONS={WANTED} before starting Python.")
