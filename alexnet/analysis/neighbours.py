"""Nearest neighbours in fc7 space (section 6.1, Figure 4 right), searched exhaustively: the features go
to a memory-mapped file and are read in chunks, each searched with one matrix product and a top-k in
torch (``|q - b|^2 = |q|^2 - 2 q.b + |b|^2``), or with FAISS where installed (docs/analysis.md)."""

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


FAISS_FROM = 200_000  # base vectors from which FAISS, when installed, searches faster than torch (BENCHMARKS.md)


def optional_faiss(rows: int, faiss_from: float | None = None):
    """FAISS if installed and ``rows`` reaches ``faiss_from`` (default ``FAISS_FROM``; ``math.inf``: never)."""
    if rows < (FAISS_FROM if faiss_from is None else faiss_from):
        return None
    try:
        import faiss
    except ImportError:
        return None
    return faiss


@torch.no_grad()
def extract_features(model, dataset, indices, batch_size: int = 128, device="cpu", workers: int = 0,
                     out: str | Path | None = None, desc: str = "fc7 features") -> np.ndarray:
    """fc7 features (after ReLU, without dropout) of ``dataset[indices]``'s centre patches, float32
    ``[len(indices), D]``; with ``out`` a memory-mapped .npy file there, renamed into place when complete."""
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
    """(distances, indices) of the ``k`` nearest rows of ``base``, smallest and then lower index first, from
    ``search(part, k)`` -> (distances [Q, k], indices in ``part`` [Q, k]) on ``chunk`` rows at a time."""
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
    """(Euclidean distances, not squared [Q, k], indices [Q, k]) of the ``k`` rows of ``base`` (read ``chunk``
    rows at a time: a memory map fits) nearest to each query; FAISS from ``faiss_from`` rows on."""
    faiss = optional_faiss(len(base), faiss_from)
    q = float_rows(queries)
    q_norms = (q * q).sum(1, keepdim=True)

    def search(part, k):
        b = float_rows(part)
        if faiss is not None:
            index = faiss.IndexFlatL2(b.shape[1])
            index.add(b.numpy())
            return index.search(q.numpy(), k)
        squared = torch.addmm((b * b).sum(1)[None], q, b.T, alpha=-2).add_(q_norms).clamp_min_(0)
        d, i = squared.topk(k, dim=1, largest=False)
        return d.numpy(), i.numpy()

    d, i = chunked_topk(base, chunk, min(k, len(base)), search)
    return np.sqrt(np.maximum(d, 0)), i
