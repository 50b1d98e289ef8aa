"""Ten-crop evaluation throughput of the paper's network (section 4.1), against the plain way.

Ours: ``alexnet.inference.evaluate`` (loader workers cut uint8 crops; the mean image is subtracted
batched on the device). Baseline, measured in the same run on the same prepared images and network:
what torchvision's ``TenCrop`` recipe does, a DataLoader whose workers turn each image into ten
float crops minus the mean, stacked into float batches. Also the centre crop, for the cost of the
ten. Prints images/s of each, the ratios, and checks that both ways give the same error.

    python benchmarks/evaluate.py [--images 64] [--batch 32] [--workers 2] [--device cpu]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet import build_model
from alexnet.data.dataset import PreparedDataset
from alexnet.data.prepare import prepare
from alexnet.inference import ErrorCounter, evaluate


def synthetic_prepared(root: Path, images: int) -> PreparedDataset:
    """``images`` random 400x300 JPEGs in two classes, prepared as the paper's 256x256 patches."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", images // 2)):
        for c in ("a", "b"):
            folder = root / "images" / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    prepare(root / "images", root / "prepared", workers=2, progress=False)
    return PreparedDataset(root / "prepared", "val")


class TenCropFloat(torch.utils.data.Dataset):
    """The baseline's per-image work in the workers: ten float crops minus the mean image's crops."""

    def __init__(self, dataset: PreparedDataset, size: int):
        self.dataset, self.size = dataset, size
        self.mean = np.asarray(dataset.mean, np.float32)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image, label = self.dataset[i]
        x = image.astype(np.float32) - self.mean
        s, last = self.size, x.shape[0] - self.size
        corners = [(0, 0), (0, last), (last, 0), (last, last), (last // 2, last // 2)]
        crops = [x[t : t + s, l : l + s] for t, l in corners]
        crops += [c[:, ::-1] for c in crops]
        return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy()), label


@torch.inference_mode()
def baseline(model, dataset, batch, workers, device) -> float:
    loader = torch.utils.data.DataLoader(TenCropFloat(dataset, model.input_size), batch_size=batch, num_workers=workers)
    counter = ErrorCounter(len(dataset.class_names))
    for crops, labels in loader:
        logits = model(crops.to(device).flatten(0, 1))
        counter.update(torch.softmax(logits, 1).view(len(labels), 10, -1).mean(1), labels)
    return counter.result(dataset.class_names)["top1_error"]


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = synthetic_prepared(Path(tmp), args.images)
        model = build_model("alexnet", num_classes=2).to(args.device).eval()
        model.class_names = dataset.class_names
        options = dict(batch_size=args.batch, device=args.device, workers=args.workers, progress=False)
        evaluate(model, dataset, crops="center", **options)  # warm-up
        theirs, t_theirs = timed(lambda: baseline(model, dataset, args.batch, args.workers, args.device))
        ours, t_ours = timed(lambda: evaluate(model, dataset, crops="ten", **options))
        centre, t_centre = timed(lambda: evaluate(model, dataset, crops="center", **options))
    n = len(dataset)
    print(f"{n} images, the paper's network, batch {args.batch}, {args.workers} workers, {args.device}")
    print(f"centre crop (ours)          {n / t_centre:8.2f} images/s")
    print(f"ten crops (ours)            {n / t_ours:8.2f} images/s   top-1 error {ours['top1_error']:.2f}%")
    print(f"ten crops (TenCrop floats)  {n / t_theirs:8.2f} images/s   top-1 error {theirs:.2f}%")
    print(f"ours / baseline: {t_theirs / t_ours:.2f}x; ten crops cost {t_ours / t_centre:.1f}x the centre crop")


if __name__ == "__main__":
    main()
