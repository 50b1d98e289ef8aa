"""Section 6.1's proposal: an auto-encoder compresses fc7 "to short binary codes", packed 8 bits to a byte
(32 bytes for 256 bits against fc7's 16,384) and searched by Hamming distance (docs/analysis.md)."""

import numpy as np
import torch
from torch import nn

from alexnet import console
from alexnet.analysis.neighbours import chunked_topk, float_rows, optional_faiss


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

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.encoder((features - self.shift) * self.scale)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction of the standardised features, binary code with straight-through gradient)."""
        p = torch.sigmoid(self.logits(features))
        code = p + ((p > 0.5).float() - p).detach()
        return self.decoder(code), code


def train_autoencoder(features: np.ndarray, bits: int = 256, hidden: int = 1024, epochs: int = 10,
                      batch_size: int = 256, lr: float = 1e-3, seed: int = 0, device="cpu") -> BinaryAutoencoder:
    """Train a ``BinaryAutoencoder`` to reconstruct ``features`` [N, D] (mean squared error, Adam)."""
    torch.manual_seed(seed)
    model = BinaryAutoencoder(features.shape[1], bits, hidden)
    sample = np.random.default_rng(seed).choice(len(features), size=min(100_000, len(features)), replace=False)
    x = float_rows(features[np.sort(sample)])  # standardised by a sample of the base
    model.shift.copy_(x.mean(0))
    model.scale.copy_(1.0 / x.std(0).clamp_min(1e-3))
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    steps = max(1, len(features) // batch_size)
    with console.progress(total=epochs * steps, desc=f"autoencoder to {bits} bits", unit="batch") as progress:
        for _ in range(epochs):
            order = rng.permutation(len(features))
            for s in range(steps):
                rows = np.sort(order[s * batch_size : (s + 1) * batch_size])
                x = float_rows(features[rows]).to(device)
                loss = nn.functional.mse_loss(model(x)[0], (x - model.shift) * model.scale)  # [0]: reconstruction
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                progress.update()
                progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return model.eval()


@torch.no_grad()
def encode(model: BinaryAutoencoder, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Packed binary codes, uint8 [N, bits / 8] (bit i of a code: logit i > 0)."""
    out = np.empty((len(features), model.bits // 8), np.uint8)
    for start in range(0, len(features), batch_size):
        x = float_rows(features[start : start + batch_size]).to(model.shift.device)
        out[start : start + len(x)] = np.packbits((model.logits(x) > 0).cpu().numpy(), axis=1)
    return out


def hamming_search(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 16384,
                   faiss_from: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` packed codes of ``base`` nearest to each query in Hamming distance, exhaustively: (distances
    [Q, k], indices [Q, k]), nearest and then lower index first; FAISS from ``faiss_from`` codes on."""
    faiss = optional_faiss(len(base), faiss_from)
    bits = base.shape[1] * 8
    queries = np.ascontiguousarray(queries, dtype=np.uint8)
    q = signs(queries)

    def search(part, k):
        if faiss is not None:
            index = faiss.IndexBinaryFlat(bits)
            index.add(np.ascontiguousarray(part, dtype=np.uint8))
            return index.search(queries, k)
        # One float32 key per (distance d, index i) in one product: i - n/2 q.b = n d + i less a constant, so
        # ties come out lower index first; all integers below 2^24 (the chunk is bounded for that): exact.
        n = len(part)
        keys = torch.addmm(torch.arange(n, dtype=torch.float32)[None], q, signs(part).T, alpha=-n / 2)
        top = keys.topk(k, dim=1, largest=False).values.to(torch.int64) + n * bits // 2
        return (top // n).numpy(), (top % n).numpy()

    return chunked_topk(base, min(chunk, 2**24 // (bits // 2 + 1)), min(k, len(base)), search)


def signs(codes: np.ndarray) -> torch.Tensor:
    """Packed codes uint8 [N, B] as float32 +-1 [N, 8B] (bit 1 is +1)."""
    return float_rows(np.unpackbits(np.asarray(codes, np.uint8), axis=1)) * 2 - 1


def precision_at_k(neighbour_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Mean share of each query's retrieved neighbours ([Q, k] labels) that have the query's class."""
    return float((neighbour_labels == np.asarray(query_labels)[:, None]).mean())
