"""`alexnet evaluate`: top-1/top-5 error with the paper's ten crops (section 4.1), over :mod:`alexnet.inference`."""

import argparse
import json

from alexnet.errors import UserError
from alexnet.inference import evaluate, load_model


def run(args: argparse.Namespace) -> int:
    from alexnet.data.dataset import PreparedDataset
    from alexnet.data.prepare import ensure_prepared

    for flag, value, least in (("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0)):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, not {value}")
    models = [load_model(path) for path in args.checkpoints]
    dataset = PreparedDataset(ensure_prepared(args.data), args.split)
    result = evaluate(models, dataset, crops=args.crops, batch_size=args.batch_size, device=args.device,
                      workers=args.workers, names=args.checkpoints)
    result["checkpoints"] = list(args.checkpoints)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    what = f"ensemble of {result['models']} models" if result["models"] > 1 else "1 model"
    crops = "ten crops" if result["crops"] == "ten" else "centre crop"
    print(f"top-1 error {result['top1_error']:.2f}%  top-5 error {result['top5_error']:.2f}%  "
          f"on {result['images']} images ({what}, {crops})")
    return 0
