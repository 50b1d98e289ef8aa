"""Forward+backward time of LRN on conv1's activation at batch 128 (128x96x55x55), CPU.

Ours (alexnet.LocalResponseNorm, hand-written backward) against nn.LocalResponseNorm with the
same function (alpha multiplied by n), measured in the same run; prints both and the ratio.

    python benchmarks/lrn.py [--batch 128] [--repeats 5] [--threads N]
"""

import argparse
import statistics
import time

import torch
from torch import nn

from alexnet import LocalResponseNorm


def time_fwd_bwd(module, x, repeats):
    times = []
    for i in range(repeats + 1):
        inp = x.detach().requires_grad_()
        start = time.perf_counter()
        module(inp).backward(torch.ones_like(x))
        if i:  # the first run warms up the allocator
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.relu(torch.randn(args.batch, 96, 55, 55) * 20)
    ours = time_fwd_bwd(LocalResponseNorm(5, 1e-4, 0.75, 2.0), x, args.repeats)
    plain = time_fwd_bwd(nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0), x, args.repeats)
    print(f"LRN forward+backward on {args.batch}x96x55x55, {torch.get_num_threads()} threads")
    print(f"  nn.LocalResponseNorm         {plain * 1000:8.1f} ms")
    print(f"  alexnet.LocalResponseNorm    {ours * 1000:8.1f} ms")
    print(f"  speed-up                     {plain / ours:8.2f}x")


if __name__ == "__main__":
    main()
