"""`alexnet bench train --data PREPARED`: end-to-end training images/s and the share of time the
device waits for data (CPU: blocked on the loader over the wall time; CUDA: idle between steps over
the span of the steps), ours against pytorch/examples imagenet/main.py's recipe RE-CREATED in the same
run (not the peer, which ``benchmarks/peer_examples.py`` runs): the source images one by one in
``DataLoader`` workers (:class:`~alexnet.bench.data.ExamplesImages`, RandomResizedCrop), the plain
network with ``torch.optim.SGD``, main.py's per-step ``loss.item()`` and accuracy."""

import math
import time
from pathlib import Path

import torch

from alexnet import speed
from alexnet.bench.common import (Rows, check_counts, host_cpu_times, output, peak_memory,
                                  print_table, progress, setup, synchronize)
from alexnet.bench.data import ExamplesImages, Repeated, random_resized_crop
from alexnet.bench.model import Runner, skip_reason
from alexnet.bench.settings import DEFAULT_SETTING, SETTINGS
from alexnet.console import plural
from alexnet.data.dataset import PreparedDataset
from alexnet.data.device_decode import DECODERS
from alexnet.data.images import IMAGE_SUFFIXES
from alexnet.data.loader import default_workers, make_loader
from alexnet.data.transforms import DeviceTransform
from alexnet.errors import UserError
from alexnet.registry import build_model
from alexnet.train.config import parse_model_options
from alexnet.train.data import prepared_dir


def source_images(dataset: PreparedDataset) -> list[tuple[str, int]]:
    """(file, class index) of the source images in the folder ``dataset``'s meta.json names (``[train/]<class>/``)."""
    source = dataset.meta.get("source", {})
    root = Path(source.get("path") or "")
    folder = root / "train" if (root / "train").is_dir() else root
    if source.get("kind") != "image-folder" or not folder.is_dir():
        raise UserError(f"{dataset.root}/meta.json: its source ({source.get('given')}, kind {source.get('kind')}) "
                        "is not an image folder on this machine, which the pytorch/examples baseline reads")
    index = {c["id"]: c["index"] for c in dataset.classes}
    files = [(str(f), index[d.name]) for d in sorted(folder.iterdir()) if d.name in index
             for f in sorted(d.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserError(f"{folder}: no JPEG or PNG files in its class folders")
    return files


class Clock:
    """Step boundaries, the time the loop waited for data (module docstring), the host's CPU use."""

    def __init__(self, device: torch.device):
        self.device, self.waits, self.events = device, [], []
        self.start = self.host = None

    def begin(self) -> None:
        synchronize(self.device)
        peak_memory(self.device, reset=True)
        self.start, self.host = time.perf_counter(), host_cpu_times()

    def step(self, waited: float, run) -> None:
        self.waits.append(waited)
        if self.device.type != "cuda":
            return run()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        run()
        end.record()
        self.events.append((begin, end))

    def result(self, images: int) -> dict:
        synchronize(self.device)
        wall = time.perf_counter() - self.start
        if self.device.type == "cuda":
            busy_span = self.events[0][0].elapsed_time(self.events[-1][1]) / 1000
            idle = sum(prev[1].elapsed_time(nxt[0]) for prev, nxt in zip(self.events, self.events[1:])) / 1000
            share = idle / busy_span if busy_span > 0 else 0.0
        else:
            share = sum(self.waits) / wall
        host = host_cpu_times()  # the share of all the host's cores busy, all processes (the workers too)
        busy = host[0] - self.host[0] if host and self.host and host[1] > self.host[1] else None
        return {"images_per_s": images / wall, "seconds": wall, "steps": len(self.waits),
                "data_wait_share": share, "host_wait_s": sum(self.waits),
                "host_cpu_use": None if busy is None else round(busy / (host[1] - self.host[1]), 3),
                "images_per_host_cpu_s": round(images / busy, 1) if busy else None,
                "peak_memory": peak_memory(self.device)}


def measure(batches, step, device: torch.device, warmup: int, steps: int | None, batch_size: int,
            seconds: float | None = None) -> dict:
    """``step`` on ``warmup`` of ``batches``, then timed on ``steps`` more or as many as fill ``seconds``."""
    it, clock = iter(batches), Clock(device)
    try:
        for _ in range(warmup):
            step(next(it))
        clock.begin()
        while len(clock.waits) < (steps or 1) or (seconds and time.perf_counter() - clock.start < seconds):
            before = time.perf_counter()
            batch = next(it)
            clock.step(time.perf_counter() - before, lambda: step(batch))
    except StopIteration:
        raise UserError("the data ran out before the measurement ended (raise --repeat)") from None
    return clock.result(len(clock.waits) * batch_size)


def measure_ours(runner: Runner, base, dataset, length: int, workers: int, decode: str, timing: dict) -> dict:
    """Our pipeline (module docstring) with ``runner``'s step."""
    size, device = base.input_size, runner.device
    transform = DeviceTransform.for_dataset(dataset, size, normalization=base.normalization).to(device)
    loader = make_loader(Repeated(dataset, length), timing["batch_size"], train=True, crop_size=size,
                         workers=workers, drop_last=True, pin_memory=device.type == "cuda", decode=decode)

    def step(batch):
        images, runner.labels, windows = batch
        runner.x = speed.to_device(transform(images, windows), device, runner.setting.channels_last)
        runner.step()

    return measure(loader.to(device), step, device, **timing)


def measure_examples(base, files: list[tuple[str, int]], length: int, workers: int, device: torch.device,
                     timing: dict) -> dict:
    """The pytorch/examples imagenet/main.py loop (module docstring) with the plain network."""
    plain = Runner(SETTINGS["plain"], base, device, optimizer_step=True)
    images = ExamplesImages(files, base.input_size, len(files) * math.ceil(length / len(files)), random_resized_crop)
    loader = torch.utils.data.DataLoader(images, batch_size=timing["batch_size"], shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda")

    def step(batch):
        plain.x, plain.labels = (t.to(device, non_blocking=True) for t in batch)  # as main.py
        logits, loss = plain.step()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices == plain.labels[:, None]
        loss.item(), top5[:, 0].float().mean().item(), top5.any(1).float().mean().item()  # main.py's meters

    return measure(loader, step, device, **timing)


def plan(decoders: list[str], workers: list[int]) -> list[tuple[str, int]]:
    """The order of the measurements: ours with the first (decoder, workers), the baseline with those
    workers, then ours with every other: between our first two, so a drift of the machine favours neither."""
    ours = [(d, w) for w in workers for d in decoders]
    return ours[:1] + [("examples", workers[0])] + ours[1:]


def benchmark(data: str, arch: str = "alexnet", batch_size: int = 128, device: str | None = None,
              setting: str | None = None, steps: int | None = None, warmup: int | None = None,
              workers: int | list[int] | None = None, threads: int | None = None,
              model_options: dict | None = None, repeat: int | None = None, keep_freed_memory: bool = False,
              flush_denormal: bool = False, decode: list[str] | None = None, seconds: float | None = None,
              rows: str | None = None, report=progress) -> dict:
    """Ours (per decoder and worker count, :func:`plan`; ``ours`` and ``ratio``: the first) and the pytorch/examples
    way on ``data``; the record printed as JSON. A measurement after the first that fails is recorded as skipped."""
    decoders = list(dict.fromkeys(decode or ["workers"]))
    if unknown := [d for d in decoders if d not in DECODERS]:
        raise UserError(f"--decode {unknown[0]}: unknown; choose from {', '.join(DECODERS)}")
    counts = list(dict.fromkeys([workers] if isinstance(workers, int) else workers or [default_workers()]))
    device, head = setup(device, threads, keep_freed_memory, flush_denormal)
    name = setting or DEFAULT_SETTING.get(device.type, "channels-last")
    if name not in SETTINGS:
        raise UserError(f"--setting {name}: unknown; known: {', '.join(SETTINGS)}")
    if reason := skip_reason(SETTINGS[name], device):
        raise UserError(f"--setting {name} does not run on {device}: {reason}")
    steps = None if seconds else steps or (200 if device.type == "cuda" else 3)
    # On a GPU the warm-up also drains what the loader made while the network compiled (workers x 2,
    # the prefetcher's 2): timed from a full queue, a loader slower than the device would look faster.
    most = max(counts)
    warmup = warmup if warmup is not None else (2 * most + 3 if device.type == "cuda" else 1)
    dataset = PreparedDataset(prepared_dir(data), "train")
    files = source_images(dataset)
    base = build_model(arch, **{"num_classes": len(dataset.classes), **(model_options or {})})
    # what the timing reads, what the workers prefetch, and for ``seconds`` a generous 50,000 images/s
    needed = (warmup + (steps or 0) + 2 * max(most, 1)) * batch_size + int(50_000 * (seconds or 0))
    length = (repeat or max(1, math.ceil(needed / len(dataset)))) * len(dataset)
    timing = dict(batch_size=batch_size, warmup=warmup, steps=steps, seconds=seconds)
    runner = Runner(SETTINGS[name], base, device, optimizer_step=True)
    out = Rows(rows, {**head, "kind": "train", "arch": base.arch, "batch_size": batch_size, "setting": name})
    runs = []  # one network for all runs of ours: compiled once
    for number, (decoder, count) in enumerate(plan(decoders, counts)):
        what = "main.py's recipe re-created" if decoder == "examples" else f"ours ({name}, decode in {decoder})"
        report(f"{what}, {plural(count, 'worker')}: {warmup} warm-up steps, then "
               f"{f'{steps} timed steps' if steps else f'{seconds} s'} of {batch_size} ...")
        try:
            measured = (measure_examples(base, files, length, count, device, timing) if decoder == "examples"
                        else measure_ours(runner, base, dataset, length, count, decoder, timing))
        except (UserError, RuntimeError) as err:
            if number == 0:
                raise
            measured = {"skipped": f"{type(err).__name__}: {err}"[:300]}
            report(f"{what}: skipped: {measured['skipped']}")
        runs.append(out.add({"decode": decoder, "workers": count, **measured}))
    examples = runs.pop(1)  # plan's second
    if "images_per_s" not in examples:
        raise UserError(f"the pytorch/examples baseline did not run: {examples.get('skipped')}")
    for r in runs:
        if "images_per_s" in r:
            r["ratio"] = r["images_per_s"] / examples["images_per_s"]
    ours = runs[0]
    return {"kind": "train", "data": str(data), "train_images": len(dataset), "source_images": len(files),
            "batch_size": batch_size, "input_size": base.input_size, "arch": base.arch, "workers": counts[0],
            "warmup": warmup, **head, "ours": {"setting": name, "about": SETTINGS[name].about, **ours}, "runs": runs,
            "examples": {"about": "pytorch/examples imagenet/main.py's recipe re-created (not the peer): per-image "
                         "PIL transforms in DataLoader workers, plain network, fp32, eager", **examples},
            "ratio": ours["ratio"]}


def print_record(r: dict) -> None:
    print(f"alexnet bench train: {r['arch']} at batch {r['batch_size']} on {r['data']} ({r['train_images']} "
          f"prepared, {r['source_images']} source images), {r['device']} ({r['device_name']}, "
          f"{r['threads']} threads), {r['date']}; ours: {r['ours']['setting']}")
    rows = [[label, f"{rec['workers']}", *(("skipped", "", "", "", rec["skipped"]) if "skipped" in rec else
             (f"{rec['images_per_s']:.1f}", f"{rec.get('ratio', 1.0):.2f}x", f"{100 * rec['data_wait_share']:.0f}%",
              f"{rec['steps']}", ""))]
            for label, rec in [(f"ours, decoding in {d['decode']}", d) for d in r["runs"]]
            + [("main.py re-created", r["examples"])]]
    print_table(["way", "workers", "images/s", "vs main.py", "waits for data", "steps", ""], rows)


def run(args) -> int:
    check_counts(args, ("batch_size", "steps", "threads", "repeat"), ("warmup", "seconds"))
    if any(w < 0 for w in args.workers or []):
        raise UserError(f"--workers must be >= 0, got {' '.join(map(str, args.workers))}")
    record = benchmark(args.data, args.arch, args.batch_size, args.device, args.setting, args.steps, args.warmup,
                       args.workers, args.threads, parse_model_options(args.model_option), args.repeat,
                       keep_freed_memory=args.keep_freed_memory, flush_denormal=args.flush_denormal,
                       decode=args.decode, seconds=args.seconds, rows=args.rows)
    return output(record, args.json, print_record)
