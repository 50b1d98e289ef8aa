"""Training images/s of the real pytorch/examples ``imagenet/main.py -a alexnet`` beside ours on
the same network, in one run.

    python benchmarks/peer_examples.py --main EXAMPLES/imagenet/main.py --folder SRC --prepared OUT

``SRC`` is an image folder (``train/<class>/<image>``, ``val/...``) and ``OUT`` is
``alexnet prepare SRC OUT``. Needs torchvision (main.py imports it); fetch pytorch/examples
yourself, it is never part of this project.

1. The peer: ``main.py -a alexnet -b B -j J -p 1`` (torchvision's AlexNet, the one-weird-trick
   network; main.py's per-image transforms in DataLoader workers, its SGD, ``loss.item()`` and
   accuracy each step), as it comes. main.py prints every batch's time; the first ``--warmup``
   batches are dropped, and the process is stopped once ``--batches`` more have been printed.
2. Ours: ``alexnet bench train --arch alexnet-owt`` (the same network, our loader, device-side
   augmentation and step, with the process settings that ``alexnet train`` makes on the CPU),
   which also measures its in-process re-creation of main.py's recipe with the network it is
   given.

Both figures are steady-state images/s: the batch size over the median time of a timed step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

BATCH_LINE = re.compile(r"Epoch: \[0\]\[\s*(\d+)/\s*(\d+)\]\s+Time\s+([0-9.]+)")


def peer(args) -> dict:
    """Run main.py until ``warmup + batches`` training batches have been printed."""
    command = [args.python, args.main, "-a", "alexnet", "-b", str(args.batch_size), "-j", str(args.workers),
               "-p", "1", "--epochs", "1", args.folder]
    print("peer:", " ".join(command), file=sys.stderr, flush=True)
    times, total = [], None
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""} if args.device == "cpu" else dict(os.environ)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=os.path.dirname(os.path.abspath(args.main))) as process:
        try:
            for line in process.stdout:
                match = BATCH_LINE.search(line)
                if not match:
                    continue
                print("  " + line.rstrip()[:110], file=sys.stderr, flush=True)
                total = int(match[2])
                times.append(float(match[3]))
                if len(times) >= args.warmup + args.batches or int(match[1]) == total:
                    break
        finally:
            process.kill()
    timed = times[args.warmup:]
    if not timed:
        raise SystemExit(f"main.py printed {len(times)} batch lines (of {total}); need more than "
                         f"--warmup {args.warmup}: give it a larger train/ folder")
    return {"images_per_s": args.batch_size / statistics.median(timed), "steps": len(timed),
            "batch_seconds": timed}


def ours(args) -> dict:
    command = [args.python, "-m", "alexnet", "bench", "train", "--data", args.prepared, "--arch", "alexnet-owt",
               "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--device", args.device,
               "--warmup", str(args.warmup), "--steps", str(args.batches), "--json"]
    if args.device == "cpu":
        command += ["--keep-freed-memory", "--flush-denormal"]  # what alexnet train sets on the CPU
    print("ours:", " ".join(command), file=sys.stderr, flush=True)
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--main", required=True, help="pytorch/examples' imagenet/main.py")
    parser.add_argument("--folder", required=True, help="the image folder main.py reads")
    parser.add_argument("--prepared", required=True, help="alexnet prepare FOLDER PREPARED")
    parser.add_argument("--python", default=sys.executable, help="the interpreter for both (with torchvision)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first, both ways")
    parser.add_argument("--batches", type=int, default=4, help="timed steps, both ways")
    args = parser.parse_args(argv)
    theirs = peer(args)
    record = ours(args)
    mine, recreated = record["ours"], record["examples"]
    rows = [("ours: alexnet bench train --arch alexnet-owt", mine["images_per_s"]),
            ("main.py's recipe re-created in-process, same network", recreated["images_per_s"]),
            ("pytorch/examples imagenet/main.py -a alexnet (the peer)", theirs["images_per_s"])]
    print(f"batch {args.batch_size}, {args.workers} workers, {args.device}, {args.warmup} warm-up and "
          f"{args.batches} timed steps each; torchvision's AlexNet in all three")
    for label, rate in rows:
        print(f"  {label:58s} {rate:7.1f} images/s  {rate / theirs['images_per_s']:.2f}x")
    print(json.dumps({"peer": theirs, "ours": mine, "recreated": recreated,
                      "ratio": mine["images_per_s"] / theirs["images_per_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
