"""The CUDA paths, on a GPU: skipped where PyTorch sees none (CI); benchmarks/gpu.sh runs them last.

Each test checks a fast path against the plain one or against the CPU: the prefetcher's side
stream, nvJPEG decoding, our LRN, the fused SGD step, float16 loss scaling, bf16 autocast with
channels-last, torch.compile, the training loop, and bench train's CUDA-event clock.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet import LocalResponseNorm, build_model, speed
from alexnet.data.loader import make_loader
from alexnet.train.optim import fast_sgd
from tests.kit import StandInDataset, make_prepared

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
TINY = dict(num_classes=7, input_size=67, channels=(8, 16, 16, 16, 16), fc_width=32, dropout=0.0)


def collect(batches):
    images, labels, windows = zip(*((b.cpu() for b in batch) for batch in batches))
    return torch.cat(images), torch.cat(labels), torch.cat(windows)


def smooth_jpegs(count=12, size=48):
    """A stand-in dataset of smooth colour images (gradients and a disc), as photographs are: on
    noise, JPEG decoders differ far more than on real images."""
    data = StandInDataset(count=count, size=size, encoding="jpeg")
    y, x = np.mgrid[0:size, 0:size]
    for i in range(count):
        rng = np.random.default_rng(i)
        image = np.stack([(x * rng.uniform(2, 5) + y * rng.uniform(0, 3) + rng.uniform(0, 80)) % 256
                          for _ in range(3)], axis=-1)
        disc = (x - size / 2) ** 2 + (y - size / 3) ** 2 < (size / 5) ** 2
        image[disc] = rng.integers(0, 256, 3)
        data.images[i] = image.astype(np.uint8)
        data.blobs[i] = data.encode(data.images[i], "jpeg")
    return data


def test_prefetched_batches_on_the_gpu_are_the_loaders():
    data = StandInDataset()
    options = dict(train=True, crop_size=40, seed=1, epoch=0)
    host = collect(make_loader(data, 5, workers=0, **options))
    for workers in (0, 2):
        batches = list(make_loader(data, 5, workers=workers, pin_memory=True, **options).to("cuda"))
        assert all(t.is_cuda for batch in batches for t in batch)
        gpu = collect(batches)
        assert all(torch.equal(a, b) for a, b in zip(host, gpu))


def test_prefetched_batches_survive_work_on_the_compute_stream():
    """Batches are used on the compute stream while the thread stages the next ones on its own:
    a long kernel queue before each read must not let a later copy overwrite an earlier batch."""
    data = StandInDataset(count=48)
    options = dict(train=True, crop_size=40, seed=4, epoch=0)
    host = collect(make_loader(data, 4, workers=0, **options))
    sums, big = [], torch.randn(2048, 2048, device="cuda")
    for images, labels, windows in make_loader(data, 4, workers=2, pin_memory=True, **options).to("cuda"):
        for _ in range(20):
            big = big @ big / 2048  # keep the compute stream busy
        sums.append(images.double().sum())
    torch.cuda.synchronize()
    expected = [host[0][i:i + 4].double().sum() for i in range(0, 48, 4)]
    assert [s.item() for s in sums] == [e.item() for e in expected]


def test_nvjpeg_decoding_gives_the_workers_crops_within_rounding():
    pytest.importorskip("torchvision")
    data = smooth_jpegs()
    for train, ten in ((True, False), (False, True)):
        options = dict(train=train, ten_crop=ten, crop_size=40, seed=3, epoch=0)
        cpu = collect(make_loader(data, 4, workers=0, **options))
        gpu = collect(make_loader(data, 4, workers=0, decode="device", **options).to("cuda"))
        assert torch.equal(cpu[1], gpu[1]) and torch.equal(cpu[2], gpu[2])
        difference = (cpu[0].float() - gpu[0].float()).abs()
        assert cpu[0].shape == gpu[0].shape
        assert difference.mean() < 1.5 and torch.quantile(difference.flatten(), 0.99) <= 8


def test_our_lrn_on_the_gpu_matches_pytorchs_and_sums_in_float32_under_autocast():
    torch.manual_seed(0)
    x = (torch.randn(4, 96, 27, 27, device="cuda") * 30).requires_grad_()
    ours = LocalResponseNorm(groups=2).cuda()
    theirs = speed.TorchLRN(ours)
    y, y_ref = ours(x), theirs(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, g)
    (grad_ref,) = torch.autograd.grad(y_ref, x, g)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-5)
    big = (x.detach() * 100).half()  # squares overflow float16: the sums must be float32
    with torch.autocast("cuda", dtype=torch.float16):
        y_half = ours(big)
    assert y_half.dtype == torch.float16 and torch.isfinite(y_half).all()
    torch.testing.assert_close(y_half.float(), ours(big.float()), rtol=2e-3, atol=1e-2)


def test_fused_sgd_on_the_gpu_takes_the_default_sgds_steps():
    torch.manual_seed(0)
    a = build_model("alexnet", **TINY).cuda()
    b = copy.deepcopy(a)
    fused = fast_sgd(a.parameters(), lr=0.01, device="cuda")
    assert fused.defaults.get("fused")
    plain = torch.optim.SGD(b.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    x, labels = torch.randn(8, 3, 67, 67, device="cuda") * 60, torch.arange(8, device="cuda") % 7
    for _ in range(3):
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            F.cross_entropy(model(x), labels).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("setting", ["fp16", "bf16", "channels-last", "compile"])
def test_each_gpu_setting_takes_a_training_step_like_plain(setting):
    from alexnet.bench.model import SETTINGS, Runner

    torch.manual_seed(0)
    base = build_model("alexnet", **TINY)
    x, labels = torch.randn(8, 3, 67, 67, device="cuda") * 60, torch.arange(8, device="cuda") % 7
    device = torch.device("cuda")
    plain = Runner(SETTINGS["plain"], base, device, True, x, labels)
    fast = Runner(SETTINGS[setting], base, device, True, x, labels)
    if fast.scaler.is_enabled():  # float16: a scale that does not overflow (and skip) the first steps
        fast.scaler = torch.amp.GradScaler("cuda", init_scale=256.0)
    for runner in (plain, fast):
        for _ in range(3):
            runner.step()
    torch.cuda.synchronize()
    start = torch.cat([p.flatten() for p in base.state_dict().values()]).cuda()
    moved = [torch.cat([p.detach().flatten() for p in r.model.state_dict().values()]) - start
             for r in (plain, fast)]
    assert torch.isfinite(moved[1]).all() and moved[1].norm() > 0
    cosine = F.cosine_similarity(moved[0], moved[1], dim=0).item()
    # float32 settings differ by summation order (and TF32 convolutions in both); half precision more
    assert cosine > (0.98 if SETTINGS[setting].amp else 0.999), cosine


def test_training_on_the_gpu_end_to_end(tmp_path):
    import json

    from alexnet.train.config import TrainConfig
    from alexnet.train.loop import train

    config = TrainConfig(data="synthetic", arch="alexnet", out=str(tmp_path / "run"), epochs=2, batch_size=16,
                         limit=256, val_limit=64, device="cuda", amp="bf16", channels_last=True,
                         model_options=dict(TINY), log_every=4)
    assert train(config) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[-1]["train_loss"] < records[0]["train_loss"] * 1.5
    assert all(np.isfinite(r["val_loss"]) for r in records)


def test_bench_train_clock_on_the_gpu(tmp_path):
    from alexnet.bench import train as bench_train

    prepared = make_prepared(tmp_path)  # 80x80 patches of PNGs in an image folder
    record = bench_train.benchmark(str(prepared), batch_size=4, device="cuda", steps=3, warmup=1, workers=1,
                                   model_options=dict(TINY), setting="bf16", report=lambda m: None)
    for way in ("ours", "examples"):
        assert record[way]["images_per_s"] > 0 and 0.0 <= record[way]["data_wait_share"] <= 1.0
    assert record["device_name"] == torch.cuda.get_device_name()


def test_bench_model_profiles_the_kernels_of_a_gpu_step():
    from alexnet.bench import model as bench_model

    record = bench_model.benchmark(batch_size=8, device="cuda", settings=["bf16"], steps=2, warmup=1,
                                   model_options=dict(TINY), profile=["bf16"], report=lambda m: None)
    top = record["profiles"][0]["top"]
    assert top and all(e["ms_per_step"] > 0 for e in top)
    assert not any(e["name"].startswith("aten::") for e in top)  # kernels, not the operators
