"""`alexnet evaluate`: top-1/top-5 error with the paper's ten crops (section 4.1), over :mod:`alexnet.inference`."""

import argparse
import json

from alexnet.data.dataset import PreparedDataset
from alexnet.data.prepare import ensure_prepared
from alexnet.errors import UserError
from alexnet.inference import evaluate, load_model


def run(args: argparse.Namespace) -> int:
    for flag, value, least in (("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0)):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, not {value}")
    models = [load_model(path) for path in args.checkpoints]
    dataset = PreparedDataset(ensure_prepared(args.data), args.split)
    result = evaluate(models, dataset, crops=args.crops, batch_size=args.batch_size, device=args.device,
                      workers=args.workers, names=args.checkpoints)
    result["checkpoints"] = list(args.checkpoints)
    what = f"ensemble of {result['models']} models" if result["models"] > 1 else "1 model"
    crops = "ten crops" if result["crops"] == "ten" else "centre crop"
    print(json.dumps(result, indent=2) if args.json else f"top-1 error {result['top1_error']:.2f}%  top-5 error "
          f"{result['top5_error']:.2f}%  on {result['images']} images ({what}, {crops})")
    return 0
