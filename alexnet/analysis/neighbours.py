"""Nearest neighbours in the last hidden layer (section 6.1, Figure 4 right).

The paper finds, for a test image, the training images whose fc7 feature vectors (4096-d)
are nearest in Euclidean distance. For the 1.2 million ILSVRC training images the features
take 20 GB as float32, so they are written to a memory-mapped file as they are extracted and
searched exhaustively in chunks, merging each chunk's best k: memory stays at one chunk, and the
answer is that of a brute-force search. A chunk is searched with one matrix product and a top-k
in torch (``|q - b|^2 = |q|^2 - 2 q.b + |b|^2``, as FAISS's own exact index does for many
queries); FAISS (the optional ``faiss`` extra), where installed, takes over from ``FAISS_FROM``
base vectors on, where it was measured faster (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from alexnet import console
from alexnet.analysis.inputs import CentreInput, centre_batches
from alexnet.errors import UserError
from alexnet.atomic import atomic_path


def float_rows(rows: np.ndarray) -> torch.Tensor:
    """float32 tensor of feature rows (copied: the features may be a read-only memory map)."""
    return torch.from_numpy(np.array(rows, dtype=np.float32))


# Base vectors from which FAISS, when installed, searches faster than torch (BENCHMARKS.md).
FAISS_FROM = 200_000


def optional_faiss(rows: int, faiss_from: float | None = None):
    """FAISS when it is installed and ``rows`` reaches ``faiss_from`` (default ``FAISS_FROM``;
    ``math.inf``: never), else None."""
    if rows < (FAISS_FROM if faiss_from is None else faiss_from):
        return None
    try:
        import faiss
    except ImportError:
        return None
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
        for images, _, windows in console.progress(loader, desc=desc, unit="batch"):
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


def chunked_topk(base, chunk: int, k: int, search):
    """The ``k`` smallest distances over every row of ``base``, ``chunk`` rows at a time.

    ``search(part, k)`` gives (distances [Q, k], indices [Q, k]) of one chunk, indices within the
    chunk. Returns (distances, indices into ``base``), smallest first; equal distances keep the
    lower index first across chunks.
    """
    best_d, best_i = None, None
    for start in range(0, len(base), chunk):
        part = base[start : start + chunk]
        d, i = search(part, min(k, len(part)))
        d, i = np.asarray(d), np.asarray(i, np.int64) + start
        if best_d is not None:
            d, i = np.concatenate([best_d, d], axis=1), np.concatenate([best_i, i], axis=1)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
    return best_d, best_i


def nearest(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65536,
            faiss_from: float | None = None):
    """The ``k`` rows of ``base`` nearest to each query in Euclidean distance (exhaustive).

    Returns (distances [Q, k], indices [Q, k]) sorted nearest first; distances are Euclidean
    (not squared). ``base`` may be a memory map: it is read ``chunk`` rows at a time, so memory
    holds one chunk and a [Q, chunk] distance matrix. FAISS searches when installed and ``base``
    has at least ``faiss_from`` rows (default ``FAISS_FROM``; ``math.inf``: torch always).
    """
    faiss = optional_faiss(len(base), faiss_from)
    q = float_rows(queries)
    queries = q.numpy()
    q_norms = (q * q).sum(1, keepdim=True)

    def search(part, k):
        b = float_rows(part)
        if faiss is not None:
            index = faiss.IndexFlatL2(b.shape[1])
            index.add(b.numpy())
            return index.search(queries, k)
        squared = torch.addmm((b * b).sum(1)[None], q, b.T, alpha=-2).add_(q_norms).clamp_min_(0)
        d, i = squared.topk(k, dim=1, largest=False)
        return d.numpy(), i.numpy()

    d, i = chunked_topk(base, chunk, min(k, len(base)), search)
    return np.sqrt(np.maximum(d, 0)), i
