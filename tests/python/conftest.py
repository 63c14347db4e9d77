# Process-wide settings that must precede CUDA's start: hardware queues for in-process
# ranks sharing a GPU (CUDA reads the variable once, at context creation) and NVLink
# multicast off (the device machines require it for multi-GPU runs).
import os

os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")
os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
os.environ.setdefault("NVSHMEM_DISABLE_NVLS", "1")
os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
