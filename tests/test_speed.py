"""Every fast path computes the same function as the plain one (alexnet.speed, alexnet.strided_conv)."""

import copy
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet import LocalResponseNorm, build_model
from alexnet import speed
from alexnet.cores import available_cores
from alexnet.strided_conv import SpaceToDepthGradConv2d, depth_to_space, space_to_depth
from tests.kit import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(num_classes=7, input_size=67, channels=(8, 16, 16, 16, 16), fc_width=32, dropout=0.0)


def outputs_and_grads(model, x, labels):
    model.zero_grad(set_to_none=True)
    logits = model(x)
    F.cross_entropy(logits.float(), labels).backward()
    grads = {name.removeprefix("_orig_mod."): p.grad.clone() for name, p in model.named_parameters()}
    return logits.detach(), grads


@pytest.fixture
def tiny_net_and_batch():
    torch.manual_seed(0)
    net = build_model("alexnet", **TINY)
    x = torch.randn(3, 3, 67, 67) * 60
    labels = torch.tensor([0, 3, 6])
    return net, x, labels


def test_torch_lrn_computes_our_lrn_with_towers_values_and_gradients():
    a = (torch.randn(2, 12, 5, 5, dtype=torch.float64) * 30).requires_grad_()
    ours = LocalResponseNorm(groups=2)
    theirs = speed.TorchLRN(ours)
    assert theirs.norm.alpha == pytest.approx(5e-4)  # alpha times n: PyTorch divides by n
    g = torch.randn(2, 12, 5, 5, dtype=torch.float64)
    (grad_ours,) = torch.autograd.grad(ours(a), a, g)
    (grad_theirs,) = torch.autograd.grad(theirs(a), a, g)
    torch.testing.assert_close(theirs(a), ours(a), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad_theirs, grad_ours, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("options", [
    dict(lrn="torch", relu_inplace=False),
    dict(channels_last=True),
    dict(relu_inplace=True, conv1_stride1_grad=True),
    dict(channels_last=True, relu_inplace=True, conv1_stride1_grad=True),
], ids=["torch-lrn", "channels-last", "inplace-relu+conv1-grad", "all-fp32-knobs"])
def test_speed_options_keep_the_networks_outputs_and_gradients_in_float32(tiny_net_and_batch, options):
    net, x, labels = tiny_net_and_batch
    plain = speed.torch_lrn(copy.deepcopy(net))
    fast = speed.apply_speed_options(copy.deepcopy(net), **options)
    xf = x.contiguous(memory_format=torch.channels_last) if options.get("channels_last") else x
    logits, grads = outputs_and_grads(plain, x, labels)
    fast_logits, fast_grads = outputs_and_grads(fast, xf, labels)
    torch.testing.assert_close(fast_logits, logits, rtol=1e-4, atol=1e-5)
    assert fast_grads.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(fast_grads[name], grads[name], rtol=1e-3, atol=1e-6, msg=name)


def test_speed_options_keep_parameters_and_state_dict_keys(tiny_net_and_batch):
    net, _, _ = tiny_net_and_batch
    keys = list(net.state_dict())
    params = list(net.parameters())
    fast = speed.apply_speed_options(net, lrn="torch", channels_last=True, conv1_stride1_grad=True)
    assert list(fast.state_dict()) == keys
    assert all(a is b for a, b in zip(fast.parameters(), params))
    assert isinstance(fast.features.conv1, SpaceToDepthGradConv2d)
    assert not isinstance(fast.features.conv2, SpaceToDepthGradConv2d)  # stride 1: nothing to gain
    assert all(m.inplace for m in fast.modules() if isinstance(m, nn.ReLU))


def test_bf16_autocast_stays_within_the_documented_tolerance_on_cpu(tiny_net_and_batch):
    """bfloat16 keeps 8 bits of mantissa. Documented tolerance: logits within 2% of their largest
    magnitude, and the whole gradient (all parameters as one vector) at cosine > 0.99 to float32's.
    Single small tensors can differ more (a conv bias gradient is a sum over every position whose
    terms nearly cancel at the paper's initialisation). LRN itself runs in float32 (alexnet.lrn)."""
    net, x, labels = tiny_net_and_batch
    logits, grads = outputs_and_grads(speed.torch_lrn(copy.deepcopy(net)), x, labels)
    fast = speed.apply_speed_options(copy.deepcopy(net), channels_last=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast_logits, fast_grads = outputs_and_grads(fast, x.contiguous(memory_format=torch.channels_last),
                                                    labels)
    assert (fast_logits.float() - logits).abs().max() <= 0.02 * logits.abs().max()
    flat = torch.cat([g.flatten() for g in grads.values()])
    fast_flat = torch.cat([fast_grads[name].flatten().float() for name in grads])
    assert F.cosine_similarity(fast_flat, flat, dim=0) > 0.99


@pytest.mark.parametrize("in_ch,kernel,stride,padding,size", [
    (3, 11, 4, 0, 35), (3, 11, 4, 2, 32), (2, 5, 3, 1, 17), (3, 4, 2, 0, 9)])
def test_conv1_weight_gradient_by_space_to_depth_equals_the_ordinary_gradient(in_ch, kernel, stride,
                                                                              padding, size):
    torch.manual_seed(1)
    conv = nn.Conv2d(in_ch, 6, kernel, stride, padding).double()
    fast = SpaceToDepthGradConv2d.from_conv(copy.deepcopy(conv))
    x = torch.randn(2, in_ch, size, size, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(conv(x))
    expected = torch.autograd.grad(conv(x), [x, conv.weight, conv.bias], g)
    got = torch.autograd.grad(fast(x), [x, fast.weight, fast.bias], g)
    torch.testing.assert_close(fast(x), conv(x))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_space_to_depth_of_a_kernel_is_undone_by_depth_to_space():
    w = torch.randn(5, 3, 11, 11)
    blocks = space_to_depth(w, 4, 12)
    assert blocks.shape == (5, 48, 3, 3)
    torch.testing.assert_close(depth_to_space(blocks, 4, 11), w)


def test_set_threads_defaults_to_the_available_cores():
    before = torch.get_num_threads()
    try:
        assert speed.set_threads() == available_cores() == torch.get_num_threads()
        assert speed.set_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_to_device_gives_channels_last_images_with_the_same_values():
    batch = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    out = speed.to_device(batch, "cpu", channels_last=True)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, batch)


def test_apply_speed_options_rejects_an_unknown_lrn():
    with pytest.raises(ValueError, match="lrn must be one of"):
        speed.apply_speed_options(nn.Linear(2, 2), lrn="caffe")


@pytest.mark.slow
@pytest.mark.parametrize("lrn", ["ours", "torch"])
def test_compiled_network_computes_the_same_function(tiny_net_and_batch, lrn):
    net, x, labels = tiny_net_and_batch
    logits, grads = outputs_and_grads(copy.deepcopy(net), x, labels)
    fast = speed.apply_speed_options(copy.deepcopy(net), lrn=lrn, channels_last=True, compile=True)
    fast_logits, fast_grads = outputs_and_grads(fast, x.contiguous(memory_format=torch.channels_last), labels)
    torch.testing.assert_close(fast_logits, logits, rtol=1e-4, atol=1e-5)
    for name in grads:
        torch.testing.assert_close(fast_grads[name], grads[name], rtol=1e-3, atol=1e-6, msg=name)


FAULTS_OF_A_SECOND_BLOCK = """
import ctypes, resource, sys
from alexnet import speed
ok = speed.keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
faults = []
for _ in range(2):  # 64 MiB written, then freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(2**26)
    ctypes.memset(block, 1, 2**26)
    libc.free(ctypes.c_void_p(block))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(ok, faults[1])
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_reuses_freed_blocks_without_page_faults():
    # In fresh processes (the setting is process-wide): by default glibc unmaps a freed 64 MiB
    # block and the next one faults in all its 16,384 pages again; kept, it is reused as it is.
    runs = {}
    for mode in ("default", "keep"):
        done = subprocess.run([sys.executable, "-c", FAULTS_OF_A_SECOND_BLOCK, mode], cwd=ROOT,
                              capture_output=True, text=True, timeout=HANG_GUARD_S)
        ok, faults = done.stdout.split()
        runs[mode] = (ok, int(faults))
    assert runs["keep"][0] == "True"
    assert runs["default"][1] > 10_000
    assert runs["keep"][1] < 1_000
