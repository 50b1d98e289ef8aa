"""Which device a command runs on; every command with ``--device`` calls :func:`pick_device`."""

import torch

from alexnet.errors import UserError


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """``name`` as a device; None or ``"auto"``: CUDA, else Apple's MPS, else the CPU. A name torch
    does not know, or CUDA where this PyTorch sees none, is a UserError naming ``--device``."""
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device name (examples: cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: this PyTorch sees no CUDA device; use --device cpu")
    return device
