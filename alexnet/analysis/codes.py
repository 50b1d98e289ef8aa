"""Short binary codes for fc7 features, searched by Hamming distance (section 6.1's proposal).

The paper: "Computing similarity by using Euclidean distance between two 4096-dimensional,
real-valued vectors is inefficient, but it could be made efficient by training an auto-encoder
to compress these vectors to short binary codes. This should produce a much better
image-retrieval method than applying autoencoders to the raw pixels [Krizhevsky & Hinton 2011]."

``BinaryAutoencoder`` maps standardised fc7 vectors through one hidden layer to ``bits``
logistic units and back. The code is the sign of each unit's logit. Training sees the binary
code in the forward pass and the logistic unit's gradient in the backward pass (the
straight-through estimator), so the decoder learns to reconstruct from exactly the bits that
retrieval will use; Krizhevsky and Hinton (2011) reached the same end by adding noise to the
code layer. Codes are packed 8 bits to a byte and searched exhaustively with FAISS's binary
index (``IndexBinaryFlat``, XOR and popcount): 32 bytes per image for 256 bits against the
16,384 bytes of a float32 fc7 vector.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from alexnet.analysis.neighbours import import_faiss


def _tensor(rows: np.ndarray) -> torch.Tensor:
    """float32 tensor of feature rows (copied: the features may be a read-only memory map)."""
    return torch.from_numpy(np.array(rows, dtype=np.float32))


class BinaryAutoencoder(nn.Module):
    """dim -> hidden -> bits (binary) -> hidden -> dim, on features standardised per dimension."""

    def __init__(self, dim: int, bits: int = 256, hidden: int = 1024):
        super().__init__()
        if bits % 8:
            raise ValueError(f"bits must be a multiple of 8 (codes are packed in bytes), not {bits}")
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, bits))
        self.decoder = nn.Sequential(nn.Linear(bits, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.bits = bits

    def fit_standardisation(self, features: np.ndarray, sample: int = 100_000, seed: int = 0) -> None:
        """Per-dimension mean and standard deviation from (a sample of) the base features."""
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(features), size=min(sample, len(features)), replace=False))
        x = _tensor(features[rows])
        self.shift.copy_(x.mean(0))
        self.scale.copy_(1.0 / x.std(0).clamp_min(1e-3))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.encoder((features - self.shift) * self.scale)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction of the standardised features, the binary code with straight-through gradient)."""
        p = torch.sigmoid(self.logits(features))
        code = p + ((p > 0.5).float() - p).detach()
        return self.decoder(code), code


def train_autoencoder(features: np.ndarray, bits: int = 256, hidden: int = 1024, epochs: int = 10,
                      batch_size: int = 256, lr: float = 1e-3, seed: int = 0, device="cpu") -> BinaryAutoencoder:
    """Train a ``BinaryAutoencoder`` to reconstruct ``features`` [N, D] (mean squared error, Adam)."""
    torch.manual_seed(seed)
    model = BinaryAutoencoder(features.shape[1], bits, hidden)
    model.fit_standardisation(features, seed=seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    steps = max(1, len(features) // batch_size)
    progress = tqdm(total=epochs * steps, desc=f"autoencoder to {bits} bits", unit="batch", dynamic_ncols=True)
    for _ in range(epochs):
        order = rng.permutation(len(features))
        for s in range(steps):
            rows = np.sort(order[s * batch_size : (s + 1) * batch_size])
            x = _tensor(features[rows]).to(device)
            reconstruction, _ = model(x)
            loss = nn.functional.mse_loss(reconstruction, (x - model.shift) * model.scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            progress.update()
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    progress.close()
    return model.eval()


@torch.no_grad()
def encode(model: BinaryAutoencoder, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Packed binary codes, uint8 [N, bits / 8] (bit i of a code: logit i > 0)."""
    device = model.shift.device
    out = np.empty((len(features), model.bits // 8), np.uint8)
    for start in range(0, len(features), batch_size):
        x = _tensor(features[start : start + batch_size]).to(device)
        out[start : start + len(x)] = np.packbits((model.logits(x) > 0).cpu().numpy(), axis=1)
    return out


def hamming_search(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` packed codes of ``base`` nearest to each query in Hamming distance (exhaustive).

    Returns (distances int [Q, k], indices int64 [Q, k]), nearest first.
    """
    faiss = import_faiss()
    index = faiss.IndexBinaryFlat(base.shape[1] * 8)
    index.add(np.ascontiguousarray(base, dtype=np.uint8))
    distances, indices = index.search(np.ascontiguousarray(queries, dtype=np.uint8), min(k, len(base)))
    return distances, indices


def precision_at_k(neighbour_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Mean share of each query's retrieved neighbours ([Q, k] labels) that have the query's class."""
    return float((neighbour_labels == np.asarray(query_labels)[:, None]).mean())
