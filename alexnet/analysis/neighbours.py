"""Nearest neighbours in the last hidden layer (section 6.1, Figure 4 right).

The paper finds, for a test image, the training images whose fc7 feature vectors (4096-d)
are nearest in Euclidean distance. For the 1.2 million ILSVRC training images the features
take 20 GB as float32, so they are written to a memory-mapped file as they are extracted and
searched in chunks with FAISS (exact L2 search), merging each chunk's best k: memory stays
at one chunk, and the answer is exactly that of a brute-force search.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from alexnet.analysis.inputs import CentreInput, centre_batches
from alexnet.errors import UserError
from alexnet.io import atomic_path


def import_faiss():
    """FAISS, imported on first use, with a clear message when it is not installed."""
    try:
        import faiss
    except ImportError as err:
        raise UserError("nearest-neighbour search needs FAISS: pip install faiss-cpu "
                        "(or the 'faiss' extra: pip install 'alexnet[faiss]')") from err
    return faiss


@torch.no_grad()
def extract_features(model, dataset, indices, batch_size: int = 128, device="cpu",
                     workers: int = 0, out: str | Path | None = None,
                     desc: str = "fc7 features") -> np.ndarray:
    """fc7 features (after ReLU, without dropout) of ``dataset[indices]``'s centre patches.

    Returns float32 ``[len(indices), D]``; with ``out`` a memory-mapped .npy file there, filled
    as batches finish and renamed into place only when complete (never a half-filled file).
    """
    if len(indices) == 0:
        raise UserError("no images to extract features from")
    model = model.to(device).eval()
    to_input = CentreInput(model, dataset, device)
    loader = centre_batches(dataset, indices, model.input_size, batch_size, workers)
    with atomic_path(out) if out is not None else contextlib.nullcontext() as tmp:
        features, start = None, 0
        for images, _, windows in tqdm(loader, desc=desc, unit="batch", dynamic_ncols=True):
            batch = model.fc7_features(to_input(images, windows)).float().cpu().numpy()
            if features is None:
                shape = (len(indices), batch.shape[1])
                features = (np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
                            if tmp is not None else np.empty(shape, np.float32))
            features[start : start + len(batch)] = batch
            start += len(batch)
        if tmp is not None:
            features.flush()
    return features


def nearest(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65536):
    """The ``k`` rows of ``base`` nearest to each query in Euclidean distance.

    Returns (distances [Q, k], indices [Q, k]) sorted nearest first; distances are Euclidean
    (not squared). ``base`` may be a memory map: it is read ``chunk`` rows at a time.
    """
    faiss = import_faiss()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(base))
    best_d = np.full((len(queries), 0), np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(base), chunk):
        part = np.ascontiguousarray(base[start : start + chunk], dtype=np.float32)
        index = faiss.IndexFlatL2(part.shape[1])
        index.add(part)
        d, i = index.search(queries, min(k, len(part)))
        best_d = np.concatenate([best_d, d], axis=1)
        best_i = np.concatenate([best_i, i + start], axis=1)
        order = np.argsort(best_d, axis=1, kind="stable")[:, :k]
        best_d = np.take_along_axis(best_d, order, axis=1)
        best_i = np.take_along_axis(best_i, order, axis=1)
    return np.sqrt(np.maximum(best_d, 0)), best_i
