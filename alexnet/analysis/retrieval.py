"""``alexnet retrieval [RUN_DIR_OR_CHECKPOINT --data PREPARED] --out DIR``: section 6.1's proposal, fc7
features (``fc7-*.npy``, reused without RUN_DIR_OR_CHECKPOINT) searched by Euclidean distance against
learned binary codes by Hamming distance: precision at k, memory and speed in ``retrieval.json``."""

import argparse
import time
from pathlib import Path

import numpy as np

from alexnet.analysis.codes import encode, hamming_search, precision_at_k, train_autoencoder
from alexnet.atomic import only_writer, write_json
from alexnet.analysis.inputs import sample_indices
from alexnet.analysis.neighbours import extract_features, nearest
from alexnet.classes import check_classes
from alexnet.devices import pick_device
from alexnet.errors import UserError

SPLITS = ("train", "val")


def extract_split_features(args, out: Path) -> None:
    """fc7 features and labels of the sampled train (base) and val (query) images, into ``out``."""
    from alexnet.analysis.runs import resolve_checkpoint
    from alexnet.data.dataset import PreparedDataset
    from alexnet.data.prepare import ensure_prepared
    from alexnet.inference import load_model
    if not args.data:
        raise UserError("--data is needed to extract features (give the prepared dataset)")
    checkpoint = resolve_checkpoint(args.source)[0]
    model = load_model(checkpoint)
    root = ensure_prepared(args.data)
    datasets = [PreparedDataset(root, split) for split in SPLITS]
    check_classes([model], datasets[0], [str(checkpoint)])  # as evaluate: the classes it was trained on
    device = pick_device(args.device)
    rng = np.random.default_rng(args.seed)
    for split, ds, limit in zip(SPLITS, datasets, (args.train_limit, args.queries)):
        picks = sample_indices(len(ds), limit, rng)
        extract_features(model, ds, picks, args.batch_size, device, args.workers,
                         out=out / f"fc7-{split}.npy", desc=f"fc7 of {split} images")
        np.save(out / f"labels-{split}.npy", np.asarray(ds.labels)[picks])


def load_split_features(out: Path):
    """(features memmap, labels) of each split, as ``extract_split_features`` left them."""
    missing = [f"{kind}-{s}.npy" for s in SPLITS for kind in ("fc7", "labels") if not (out / f"{kind}-{s}.npy").exists()]
    if missing:
        raise UserError(f"{out}: no {', '.join(missing)}; give RUN_DIR_OR_CHECKPOINT and --data to extract them")
    return [(np.load(out / f"fc7-{s}.npy", mmap_mode="r"), np.load(out / f"labels-{s}.npy")) for s in SPLITS]


def compare(base, base_labels, queries, query_labels, bits=256, hidden=1024, k=10, epochs=10,
            seed=0, device="cpu") -> dict:
    """Euclidean search of full fc7 vectors against Hamming search of learned binary codes."""
    def measured(search, base_vectors, query_vectors, bytes_per_image: int) -> dict:
        start = time.perf_counter()
        found = search(base_vectors, query_vectors, k)[1]
        seconds = time.perf_counter() - start
        return {"precision_at_k": precision_at_k(base_labels[found], query_labels), "bytes_per_image": bytes_per_image,
                "index_bytes": bytes_per_image * len(base), "search_seconds": seconds,
                "queries_per_s": len(queries) / seconds}

    euclidean = measured(nearest, base, queries, 4 * base.shape[1])
    autoencoder = train_autoencoder(base, bits, hidden, epochs, seed=seed, device=device)
    binary = measured(hamming_search, encode(autoencoder, base), encode(autoencoder, queries), bits // 8)
    return {"base_images": len(base), "queries": len(queries), "k": k, "feature_dim": base.shape[1],
            "euclidean_fc7": euclidean,
            "binary_codes": {"bits": bits} | binary | {"autoencoder": {"hidden": hidden, "epochs": epochs}},
            "chance_precision": float(np.mean([np.mean(base_labels == c) for c in query_labels]))}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with only_writer(out, f"--out {args.out}"):
        if args.bits < 8 or args.bits % 8:
            raise UserError(f"--bits must be a positive multiple of 8, not {args.bits}")
        if args.source:
            extract_split_features(args, out)
        (base, base_labels), (queries, query_labels) = load_split_features(out)
        result = compare(base, base_labels, queries, query_labels, args.bits, args.hidden, args.k,
                         args.epochs, args.seed, pick_device(args.device))
        write_json(out / "retrieval.json", result)
        print(f"{result['queries']} queries, {result['base_images']} images searched, precision at {args.k}:")
        searches = (("fc7 Euclidean", result["euclidean_fc7"]), (f"{args.bits}-bit codes", result["binary_codes"]))
        for label, r in searches:
            print(f"  {label}   {r['precision_at_k']:.3f}  {r['bytes_per_image']:6d} B/image  "
                  f"{r['queries_per_s']:10.1f} queries/s")
        print(f"  (chance {result['chance_precision']:.3f}); written {out / 'retrieval.json'}")
    return 0
