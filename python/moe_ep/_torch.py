"""Lazy torch import: `import moe_ep` works without torch; the tensor calls need it."""


def require_torch(what):
    """Returns the torch module, or raises ImportError naming `what` needed it."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"{what} needs PyTorch, which failed to import: {error}") from error
    return torch
