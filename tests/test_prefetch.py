"""The device prefetcher (a thread staging batches ahead) and JPEG decoding on the device.

No GPU here: the CUDA stream and nvJPEG parts run on the GPU only (benchmarks/gpu.sh). What runs
everywhere is checked here: the same batches in the same order as the plain loader, errors passed
to the consumer, early stops that end the thread, and ``decode="device"`` giving exactly the
default path's crops when the decoder is libjpeg (a stand-in for torchvision.io.decode_jpeg that
decodes with Pillow, as the workers do).
"""

import sys
import threading

import numpy as np
import pytest
import torch

from alexnet.data.batches import EncodedBatches
from alexnet.data.loader import make_loader
from alexnet.data.prefetch import DevicePrefetcher
from alexnet.data.transforms import cut_at_windows
from alexnet.errors import UserError
from tests.kit import StandInDataset


def collect(batches):
    images, labels, windows = zip(*batches)
    return torch.cat(images), torch.cat(labels), torch.cat(windows)


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "alexnet-prefetch"]


def test_prefetcher_yields_the_loaders_batches_in_order():
    data = StandInDataset()
    options = dict(train=True, crop_size=40, seed=5, epoch=1)
    plain = collect(make_loader(data, 5, workers=0, **options))
    for workers in (0, 2):
        ahead = collect(make_loader(data, 5, workers=workers, **options).to("cpu", depth=3))
        assert all(torch.equal(a, b) for a, b in zip(plain, ahead))
    assert not prefetch_threads()


def test_prefetcher_applies_its_stage_in_the_thread():
    seen = []

    def stage(batch):
        seen.append(threading.current_thread().name)
        return batch * 10

    assert list(DevicePrefetcher(iter(range(5)), "cpu", stage=stage)) == [0, 10, 20, 30, 40]
    assert set(seen) == {"alexnet-prefetch"}


def test_an_error_in_the_loader_reaches_the_consumer_after_the_batches_before_it():
    def batches():
        yield (torch.ones(2),)
        raise UserError("sample 7 of stand-in is 10x10x3, expected 48x48x3")

    got = []
    with pytest.raises(UserError, match="sample 7"):
        for batch in DevicePrefetcher(batches(), "cpu"):
            got.append(batch)
    assert len(got) == 1 and torch.equal(got[0][0], torch.ones(2))
    assert not prefetch_threads()


def test_stopping_early_ends_the_thread_and_the_source():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield (torch.tensor([i]),)
                i += 1
        finally:
            closed.set()

    prefetcher = DevicePrefetcher(endless(), "cpu", depth=2)
    for batch in prefetcher:
        if batch[0].item() == 3:
            break
    assert not prefetch_threads()
    assert closed.wait(5)
    with pytest.raises(RuntimeError, match="once"):
        next(iter(prefetcher))


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        DevicePrefetcher([], "cpu", depth=0)


def test_device_crops_are_a_crop_and_mirror_per_window():
    images = torch.randint(0, 256, (3, 12, 14, 3), dtype=torch.uint8)
    windows = torch.tensor([[[0, 0, 0], [2, 5, 1]], [[4, 6, 1], [1, 1, 0]], [[4, 6, 0], [0, 6, 1]]])
    crops = cut_at_windows(images, windows, 8)
    assert crops.shape == (3, 2, 8, 8, 3) and crops.is_contiguous()
    for n in range(3):
        for v in range(2):
            top, left, flipped = windows[n, v].tolist()
            expected = images[n, top:top + 8, left:left + 8]
            assert torch.equal(crops[n, v], expected.flip(1) if flipped else expected)


@pytest.mark.parametrize("train, ten_crop", [(True, False), (False, False), (False, True)])
def test_device_decoding_gives_the_workers_crops(fake_torchvision, train, ten_crop):
    jpeg = StandInDataset(count=10, encoding="jpeg")
    options = dict(train=train, ten_crop=ten_crop, crop_size=40, seed=2, epoch=1)
    expected = collect(make_loader(jpeg, 4, workers=0, **options))
    for workers in (0, 2):
        got = collect(make_loader(jpeg, 4, workers=workers, decode="device", **options).to("cpu"))
        for a, b in zip(expected, got):
            assert a.shape == b.shape and torch.equal(a, b)
    assert got[0].shape[-3:] == (3, 40, 40) and (got[0].dim() == 5) == ten_crop
    assert {(mode, device.type) for _, mode, device in fake_torchvision} == {("RGB", "cpu")}
    assert max(n for n, _, _ in fake_torchvision) == 4  # a batch at a time


def test_device_decoding_checks_the_decoded_size(fake_torchvision):
    jpeg = StandInDataset(count=4, encoding="jpeg")
    jpeg.blobs[2] = StandInDataset.encode(np.zeros((30, 48, 3), np.uint8), "jpeg")
    with pytest.raises(UserError, match="decodes to 30x48x3, expected 48x48x3"):
        collect(make_loader(jpeg, 4, train=False, crop_size=40, workers=0, decode="device").to("cpu"))


def test_device_decoding_wants_jpeg_shards(fake_torchvision):
    with pytest.raises(UserError, match="JPEG shards.*--format jpeg"):
        make_loader(StandInDataset(count=4), 2, train=True, crop_size=40, decode="device")


def test_device_decoding_without_torchvision_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    jpeg = StandInDataset(count=4, encoding="jpeg")
    with pytest.raises(UserError, match="--decode device needs torchvision"):
        EncodedBatches(jpeg, 40)


def test_unknown_decode_is_refused():
    with pytest.raises(UserError, match="--decode gpu: unknown; choose one of workers, device"):
        make_loader(StandInDataset(count=4), 2, train=True, crop_size=40, decode="gpu")


class FakeCuda:
    """Just enough of torch.cuda for the prefetcher's CUDA branch, recording what happens in which
    thread: every entry of ``log`` starts with the name of the thread that made it."""

    def __init__(self):
        self.log = []

    def note(self, *entry):
        self.log.append((threading.current_thread().name, *entry))  # list.append is atomic

    def of(self, thread: str) -> list[tuple]:
        """What ``thread`` did, in its order (each thread's own order does not depend on timing)."""
        return [entry[1:] for entry in self.log if entry[0] == thread]

    def install(self, monkeypatch):
        fake = self

        class Stream:
            def __init__(self, device=None):
                self.device, self.name = device, "side"

            def wait_event(self, event):
                fake.note("wait", self.name, event.number)

        class Event:
            count = 0

            def __init__(self):
                Event.count += 1
                self.number = Event.count

            def record(self, stream):
                fake.note("record", stream.name, self.number)

        class StreamContext:
            def __init__(self, stream):
                self.stream = stream

            def __enter__(self):
                fake.note("enter", self.stream.name)

            def __exit__(self, *exc):
                fake.note("exit", self.stream.name)

        consumer = Stream()
        consumer.name = "compute"
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
        monkeypatch.setattr(torch.cuda, "set_device", lambda d: fake.note("set_device", d))
        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "stream", StreamContext)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: consumer)
        return self


def test_on_cuda_each_batch_is_staged_on_a_side_stream_that_the_compute_stream_waits_for(monkeypatch):
    """Each thread's own sequence is checked, and across the two threads only what the prefetcher
    guarantees whatever the interleaving: a batch's event is recorded before the step's stream
    waits on it (the thread records, then queues the batch; the consumer waits after taking it)."""
    cuda = FakeCuda().install(monkeypatch)

    def stage(batch):
        cuda.note("stage", batch)
        return (torch.tensor([batch]),)

    prefetcher = DevicePrefetcher(range(3), "cuda", stage=stage)
    assert prefetcher.device == torch.device("cuda", 3)  # the thread needs the index
    seen = []
    for (batch,) in prefetcher:
        seen.append(batch.item())
        cuda.note("use", batch.item())
    assert seen == [0, 1, 2]
    staging = cuda.of("alexnet-prefetch")
    assert staging[0] == ("set_device", torch.device("cuda", 3))
    events = [entry[2] for entry in staging if entry[0] == "record"]
    assert staging[1:] == [step for k, event in enumerate(events)  # staged inside the side stream
                           for step in (("enter", "side"), ("stage", k), ("record", "side", event), ("exit", "side"))]
    assert cuda.of("MainThread") == [step for k, event in enumerate(events)  # waits before it reads
                                     for step in (("wait", "compute", event), ("use", k))]
    for event in events:
        assert cuda.log.index(("alexnet-prefetch", "record", "side", event)) < \
            cuda.log.index(("MainThread", "wait", "compute", event))


def test_device_decoding_with_the_real_torchvision_on_the_cpu():
    """Where torchvision is installed: its decode_jpeg (libjpeg on the CPU) through the same path.
    Its libjpeg build may round a few pixels differently from Pillow's."""
    pytest.importorskip("torchvision.io")
    jpeg = StandInDataset(count=10, encoding="jpeg")
    options = dict(train=True, crop_size=40, seed=2, epoch=1)
    expected = collect(make_loader(jpeg, 4, workers=0, **options))
    got = collect(make_loader(jpeg, 4, workers=0, decode="device", **options).to("cpu"))
    assert torch.equal(expected[1], got[1]) and torch.equal(expected[2], got[2])
    assert (expected[0].float() - got[0].float()).abs().mean() < 1.0


def test_training_with_device_decoding_but_no_torchvision_stops_before_making_the_run_folder(tmp_path,
                                                                                            monkeypatch):
    from alexnet.train import loop
    from alexnet.train.config import TrainConfig
    from tests.kit import make_prepared

    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    prepared = make_prepared(tmp_path / "data")
    config = TrainConfig(data=str(prepared), out=str(tmp_path / "run"), decode="device", device="cpu",
                         epochs=1, workers=0, model_options={"input_size": 67})
    with pytest.raises(UserError, match="--decode device needs torchvision"):
        loop.train(config)
    assert not (tmp_path / "run").exists()
