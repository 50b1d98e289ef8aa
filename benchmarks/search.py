"""Exact search in torch against FAISS, for the analysis commands' FAISS_FROM threshold.

Euclidean search of 4096-d float32 vectors (``alexnet.analysis.neighbours.nearest``, Figure 4's
neighbours) or Hamming search of 256-bit codes (``alexnet.analysis.codes.hamming_search``,
``alexnet retrieval``), k = 10, random data, each way in the same run; best of 3.

    python benchmarks/search.py l2 20000,100000 5,1000
    python benchmarks/search.py hamming 20000,200000,1000000 1000
"""

import math
import sys
import time

import numpy as np

from alexnet.analysis.codes import hamming_search
from alexnet.analysis.neighbours import nearest


def best_of(search, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        search()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    kind, sizes, query_counts = sys.argv[1], sys.argv[2], sys.argv[3]
    rng = np.random.default_rng(0)
    for n in map(int, sizes.split(",")):
        for nq in map(int, query_counts.split(",")):
            if kind == "l2":
                base, queries = rng.random((n, 4096), dtype=np.float32), rng.random((nq, 4096), dtype=np.float32)
                search = nearest
            else:
                base, queries = (rng.integers(0, 256, (m, 32), dtype=np.uint8) for m in (n, nq))
                search = hamming_search
            torch_s = best_of(lambda: search(base, queries, 10, faiss_from=math.inf))
            faiss_s = best_of(lambda: search(base, queries, 10, faiss_from=0))
            print(f"{kind} base {n} queries {nq}: torch {torch_s:.3f} s  faiss {faiss_s:.3f} s  "
                  f"faiss is {torch_s / faiss_s:.2f}x as fast", flush=True)


if __name__ == "__main__":
    main()
