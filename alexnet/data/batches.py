"""Views of a prepared dataset whose items are whole batches, as loader workers make them: decoded
and cropped (:class:`CropBatches`) or JPEG bytes for the device to decode (:class:`EncodedBatches`).
"""

import re

import numpy as np
import torch
import torch.utils.data

from alexnet.data.dataset import image_shape
from alexnet.data.device_decode import check_device_decoding, decode_jpegs
from alexnet.data.images import decode
from alexnet.data.transforms import crop_into, cut_at_windows, random_windows, view_windows
from alexnet.errors import UserError


def sample_error(dataset, index: int, what: str, err: BaseException) -> UserError:
    """A stored sample that cannot be read or decoded, named with its shard (a DataLoader re-raises it)."""
    where = dataset.shard_of(int(index)) if hasattr(dataset, "shard_of") else getattr(dataset, "root", "the dataset")
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    reason = re.sub(r" ?<[^<>]* at 0x[0-9a-f]+>", "", reason)  # PIL names its in-memory file
    return UserError(f"{where}: sample {index} {what} ({type(err).__name__}: {reason}); the file is damaged "
                     "or truncated: prepare the dataset again (alexnet prepare)")


def as_is(batch):
    """A DataLoader ``collate_fn`` for datasets that return whole batches already."""
    return batch


class CropBatches(torch.utils.data.Dataset):
    """A view of ``dataset`` whose items are whole batches: ``self[sample numbers]`` is ``(images,
    labels, windows)``, ``windows`` being ``"random"`` (training, section 4.1), ``"centre"`` or ``"ten"``.
    With a ``ring`` of shared slots ``[slots, batch, views, S, S, 3]`` (new shared memory per batch is
    slow), ``self[(slot, sample numbers)]`` fills that slot and returns ``(slot, labels, windows)``."""

    ring: torch.Tensor | None = None

    def __init__(self, dataset, crop_size: int, windows: str = "random", *, seed: int = 0,
                 epoch: int = 0, random_crop: bool = True, flip: bool = True):
        if windows not in ("random", "centre", "ten"):
            raise ValueError(f"windows must be 'random', 'centre' or 'ten', got {windows!r}")
        self.dataset, self.crop_size, self.windows = dataset, crop_size, windows
        self.seed, self.epoch, self.random_crop, self.flip = seed, epoch, random_crop, flip
        self.image_size = image_shape(dataset)  # without reading the mean image: evaluation may not need it
        self.labels = np.asarray(dataset.labels, dtype=np.int64)
        self.views = 10 if windows == "ten" else 1
        self.sample_windows(np.zeros(0, np.int64))  # a crop that does not fit fails here, not in a worker

    def __len__(self) -> int:
        return len(self.dataset)

    def batch_shape(self, count: int) -> tuple[int, ...]:
        """The storage shape of ``count`` images: NHWC, with the ten crops as a second axis."""
        return (count, self.views, self.crop_size, self.crop_size, 3)

    def sample_windows(self, indices: np.ndarray) -> np.ndarray:
        """``[len(indices), views, 3]`` windows of these samples."""
        if self.windows == "random":
            return random_windows(indices, self.image_size, self.crop_size, seed=self.seed, epoch=self.epoch,
                                  random_crop=self.random_crop, flip=self.flip)[:, None]
        return np.tile(view_windows(self.image_size, self.crop_size, self.windows)[None], (len(indices), 1, 1))

    def read(self, index: int) -> bytes:
        """The stored bytes of sample ``index``; a failure names the sample and its shard."""
        try:
            return self.dataset.read(int(index))[0]
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - a damaged file, reported as such
            raise sample_error(self.dataset, index, "cannot be read", err) from None

    def fill(self, out: np.ndarray, indices: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Decode samples ``indices`` and write their crops into ``out``; their labels and windows."""
        windows = self.sample_windows(indices)
        for k, index in enumerate(indices):
            data = self.read(index)
            try:
                image = decode(data, self.dataset.extension)
            except Exception as err:  # noqa: BLE001 - PIL and numpy raise many kinds on damaged bytes
                raise sample_error(self.dataset, index, "cannot be decoded", err) from None
            if image.shape != (*self.image_size, 3):
                raise UserError(f"sample {index} of {getattr(self.dataset, 'root', 'the dataset')} is "
                                f"{'x'.join(map(str, image.shape))}, expected "
                                f"{self.image_size[0]}x{self.image_size[1]}x3 like its mean image")
            for view in range(self.views):
                crop_into(out[k, view], image, windows[k, view])
        return torch.from_numpy(self.labels[indices]), windows

    def __getitem__(self, item):
        if self.ring is None:
            indices = np.asarray(item, np.int64)
            images = torch.empty(self.batch_shape(len(indices)), dtype=torch.uint8)
            labels, windows = self.fill(images.numpy(), indices)
            return self.as_batch(images, labels, windows)
        slot, indices = item
        labels, windows = self.fill(self.ring[slot, :len(indices)].numpy(), indices)
        return slot, labels, windows

    def as_batch(self, images: torch.Tensor, labels: torch.Tensor, windows: np.ndarray):
        """The loader's ``(images [N, (10,) 3, S, S], labels, windows [N, (10,) 3])`` from NHWC storage."""
        images = images.permute(0, 1, 4, 2, 3)
        windows = windows if isinstance(windows, torch.Tensor) else torch.from_numpy(windows)
        if self.views == 1:
            images, windows = images[:, 0], windows[:, 0]
        return images, labels, windows


class EncodedBatches(CropBatches):
    """Batches of stored JPEGs for ``decode="device"``: ``(data, sizes, labels, windows)``, the JPEGs
    end to end in one uint8 tensor; :meth:`stage` makes the loader's usual batch of it on a device."""

    def __init__(self, dataset, crop_size: int, windows: str = "random", **options):
        super().__init__(dataset, crop_size, windows, **options)
        check_device_decoding(dataset)  # here, in the training process, not in a worker

    def __getitem__(self, indices):
        indices = np.asarray(indices, np.int64)
        encoded = [self.read(i) for i in indices]
        sizes = np.array([len(e) for e in encoded], np.int64)
        data = np.frombuffer(b"".join(encoded), np.uint8).copy()
        return (torch.from_numpy(data), torch.from_numpy(sizes), torch.from_numpy(self.labels[indices]),
                torch.from_numpy(self.sample_windows(indices)))

    def stage(self, batch, device: torch.device):
        """``(images, labels, windows)`` on ``device`` from a batch of JPEGs, decoded there and cropped."""
        data, sizes, labels, windows = batch
        decoded = decode_jpegs(data, sizes, device)
        shapes = {tuple(image.shape) for image in decoded}
        expected = (3, *self.image_size)
        if shapes != {expected}:
            bad = sorted(shapes - {expected})[0]
            raise UserError(f"a sample of {getattr(self.dataset, 'root', 'the dataset')} decodes to "
                            f"{'x'.join(map(str, bad[1:]))}x{bad[0]}, expected "
                            f"{self.image_size[0]}x{self.image_size[1]}x3 like its mean image")
        images = torch.stack(decoded).permute(0, 2, 3, 1)  # NHWC view of NCHW storage
        windows = windows.to(device, non_blocking=True)
        crops = cut_at_windows(images, windows, self.crop_size)
        return self.as_batch(crops, labels.to(device, non_blocking=True), windows)
