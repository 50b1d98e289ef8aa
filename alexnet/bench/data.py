"""`alexnet bench data`: images/s of the training input pipeline (:func:`make_loader`, uint8 crops of
the prepared samples) against the usual way (pytorch/examples' per-image transform on the original
images, :class:`ExamplesImages`), with the same source images, workers and batch size; over the wall
clock, and over the workers' CPU seconds (which a busy machine disturbs less)."""

import datetime
import json
import math
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.data
from PIL import Image

from alexnet.bench.common import Rows, check_counts, output, progress
from alexnet.console import plural
from alexnet.data.dataset import PreparedDataset
from alexnet.data.images import IMAGE_SUFFIXES, jpeg_library
from alexnet.data.loader import default_workers, make_loader
from alexnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from alexnet.errors import UserError

USUAL_CROP = 224  # pytorch/examples' RandomResizedCrop/CenterCrop size


def random_resized_crop(image: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """torchvision's RandomResizedCrop: 8-100% of the area at aspect 3/4-4/3, resized bilinearly."""
    width, height = image.size
    for _ in range(10):
        target = width * height * rng.uniform(0.08, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
            return image.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
    side = min(width, height)  # fallback: the central square
    left, top = (width - side) // 2, (height - side) // 2
    return image.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))


def resized_random_crop(image: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """The shorter side resized to 256 (bilinear), then a random ``size`` x ``size`` crop."""
    scale = 256 / min(image.size)
    image = image.resize((max(256, round(image.width * scale)), max(256, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    left, top = rng.integers(0, image.width - size + 1), rng.integers(0, image.height - size + 1)
    return image.crop((left, top, left + size, top + size))


class ExamplesImages(torch.utils.data.Dataset):
    """pytorch/examples' per-image training transform on ``files`` ((path, label), repeated to ``length``):
    ``crop`` (:func:`random_resized_crop` or :func:`resized_random_crop`), mirror half, ToTensor, Normalize."""

    def __init__(self, files: list[tuple[str, int]], size: int, length: int, crop):
        self.files, self.size, self.length, self.crop = files, size, length, crop

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        path, label = self.files[i % len(self.files)]
        rng = np.random.default_rng([i, torch.initial_seed() % 2**32])
        with Image.open(path) as f:
            image = self.crop(f.convert("RGB"), self.size, rng)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
        return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1), label


class Repeated:
    """``dataset`` repeated to ``length`` samples (sample ``i`` is ``i % len(dataset)``)."""

    def __init__(self, dataset, length: int):
        self.dataset, self.length = dataset, length
        self.labels = np.resize(np.asarray(dataset.labels, np.int64), length)
        self.mean, self.extension = dataset.mean, dataset.extension

    def __len__(self) -> int:
        return self.length

    def read(self, i: int):
        return self.dataset.read(i % len(self.dataset))


def source_images(data: Path, source: str | None) -> tuple[Path, list[str]]:
    """The original image files the prepared training split came from, and their folder."""
    if source is None:
        try:
            recorded = json.loads((data / "meta.json").read_text()).get("source")
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read {data / 'meta.json'} ({err}); give --source DIR") from err
        recorded = recorded if isinstance(recorded, dict) else {"path": recorded}
        if not (source := recorded.get("path")):
            raise UserError(f"{data / 'meta.json'} records no source folder (prepared from {recorded.get('given')}: "
                            "an archive or a download, extracted only while prepare ran); give --source DIR")
    root = Path(source)
    if not root.is_dir():
        raise UserError(f"source {root} is not a folder of images; give --source DIR with the original JPEG files")
    folder = root / "train" if (root / "train").is_dir() else root
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return folder, files


def measure(make_loader_for, images: int, seconds: float | None, calibration: int) -> dict:
    """Run ``make_loader_for(images)`` to its end (with ``seconds``: as many images as a ``calibration``-image
    run's rate reads in that time); images/s, starting the workers included, and its workers' CPU seconds."""
    if seconds:
        rate = measure(make_loader_for, calibration, None, calibration)["images_per_s"]
        images = max(calibration, math.ceil(rate * seconds))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, count = time.perf_counter(), 0
    for batch in make_loader_for(images):  # the loop's end joins the workers, so that their CPU time counts
        count += len(batch[1])
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"images": count, "seconds": round(elapsed, 3), "images_per_s": round(count / elapsed, 1),
            "worker_cpu_s": round(cpu, 3), "images_per_worker_cpu_s": round(count / cpu, 1) if cpu > 0 else None}


def run(args) -> int:
    check_counts(args, (), ("seconds",))
    data, batch_size, seconds = Path(args.data), args.batch_size, args.seconds
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise UserError("--workers must be at least 1: the pipelines are measured in workers")
    if min(args.images, args.baseline_images, batch_size) < 1:
        raise UserError("--images, --baseline-images and --batch-size must be positive")
    dataset = PreparedDataset(data, "train")
    folder, files = source_images(data, args.source)
    out = Rows(args.rows, {"kind": "data", "workers": workers, "batch_size": batch_size,
                           "jpeg_decoder": jpeg_library()})
    calibration = 4 * workers * batch_size
    size = f"{seconds} s" if seconds else "{} images"
    progress(f"training pipeline: {size.format(args.images)} from {data} with {plural(workers, 'worker')} ...")
    ours = out.add({"way": "pipeline", **measure(lambda n: make_loader(
        Repeated(dataset, n), batch_size, train=True, crop_size=args.crop_size, workers=workers, pin_memory=False),
        args.images, seconds, calibration)})
    progress(f"usual way: {size.format(args.baseline_images)} from {folder} with {plural(workers, 'worker')} ...")
    usual = out.add({"way": "usual_way", **measure(lambda n: torch.utils.data.DataLoader(
        ExamplesImages([(f, 0) for f in files], USUAL_CROP, n, resized_random_crop), batch_size=batch_size,
        shuffle=True, num_workers=workers), args.baseline_images, seconds, calibration)})
    del ours["way"], usual["way"]
    ways = {key: {"crop_size": crop, **r, "images_per_s_per_worker": round(r["images_per_s"] / workers, 1)}
            for key, crop, r in (("pipeline", args.crop_size, ours), ("usual_way", USUAL_CROP, usual))}
    return output({
        "benchmark": "data", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "torch": torch.__version__, "jpeg_decoder": jpeg_library()},
        "data": str(data), "source": str(folder), "source_images": len(files),
        "workers": workers, "batch_size": batch_size, **ways,
        "ratio": {key: round(ours[key] / usual[key], 2) if ours[key] and usual[key] else None
                  for key in ("images_per_s", "images_per_worker_cpu_s")},
    }, args.json, print_record)


def print_record(result: dict) -> None:
    print(f"{'':22}{'images/s':>10}{'per worker':>12}{'per CPU second':>18}")
    for name, r in (("training pipeline", result["pipeline"]), ("usual way", result["usual_way"]),
                    ("ratio", {**result["ratio"], "images_per_s_per_worker": ""})):
        print(f"{name:22}{r['images_per_s']:>10}{r['images_per_s_per_worker']:>12}{r['images_per_worker_cpu_s']:>18}")
