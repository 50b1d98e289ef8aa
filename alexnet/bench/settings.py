"""The speed settings ``alexnet bench`` measures and its defaults; light (no torch) for ``--help``."""

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Setting:
    """One way of running the same network; ``fused``: in-place ReLUs, the trainer's optimizer (the
    paper's update), and on the CPU conv1's weight gradient as a stride-1 convolution."""

    name: str
    about: str
    lrn: str = "ours"
    channels_last: bool = False
    amp: str | None = None  # None (float32), "bf16", "fp16": autocast
    compile: bool = False
    fused: bool = False


_FAST = Setting("fast-fp32", "ours, channels-last, in-place ReLU, conv1 stride-1 grad (CPU), the paper's update",
                channels_last=True, fused=True)
SETTINGS = {s.name: s for s in [
    Setting("plain", "nn.LocalResponseNorm, NCHW, fp32, eager, torch.optim.SGD", lrn="torch"),
    Setting("ours-lrn", "our LRN (hand-written backward), otherwise plain"),
    Setting("channels-last", "our LRN, channels-last memory", channels_last=True),
    _FAST,
    replace(_FAST, name="bf16", about="fast-fp32 under bfloat16 autocast", amp="bf16"),
    replace(_FAST, name="fp16", about="fast-fp32 under float16 autocast (loss scaling)", amp="fp16"),
    replace(_FAST, name="compile", about="bf16 with torch.compile", amp="bf16", compile=True),
    replace(_FAST, name="compile-torch-lrn", about="compile with nn.LocalResponseNorm", amp="bf16",
            compile=True, lrn="torch"),
]}
DEFAULT_SETTINGS = {"cpu": ["plain", "ours-lrn", "channels-last", "fast-fp32", "bf16"], "cuda": list(SETTINGS)}
DEFAULT_SETTING = {"cpu": "fast-fp32", "cuda": "compile"}  # bench train's setting for ours
