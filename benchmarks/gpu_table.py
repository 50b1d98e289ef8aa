"""The one table benchmarks/gpu.sh prints: RESULTS_DIR/data.json, model.json and train.json.

    python benchmarks/gpu_table.py RESULTS_DIR
"""

import json
import sys
from pathlib import Path


def load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def rows(data, model, train):
    if data:
        yield ("input pipeline: ours (loader workers)", f"{data['pipeline']['images_per_s']:.0f}",
               f"{data['ratio']['images_per_s']:.2f}x", "the usual per-image way, same run")
        yield "input pipeline: the usual way", f"{data['usual_way']['images_per_s']:.0f}", "1.00x", ""
    for s in model["settings"] if model else []:
        name = f"model step: {s['name']}"
        if s["skipped"]:
            yield name, "skipped", "", s["skipped"]
        else:
            yield name, f"{s['images_per_s']:.0f}", f"{s['ratio']:.2f}x", "plain PyTorch, same run"
    if train:
        for key, label, ratio in (("ours", f"end to end: ours ({train['ours']['setting']})", train["ratio"]),
                                  ("examples", "end to end: pytorch/examples way", 1.0)):
            r = train[key]
            yield (label, f"{r['images_per_s']:.0f}", f"{ratio:.2f}x", "pytorch/examples way, same run; device "
                   f"waits for data {100 * r['data_wait_share']:.0f}% of the time")
        for r in train.get("decoders", [])[1:]:
            label = f"end to end: ours, decoding in {r['decode']}"
            if "skipped" in r:
                yield label, "skipped", "", r["skipped"]
            else:
                yield (label, f"{r['images_per_s']:.0f}", f"{r['ratio']:.2f}x", "pytorch/examples way, same run; "
                       f"device waits for data {100 * r['data_wait_share']:.0f}% of the time")


def main(results: Path) -> int:
    data, model, train = (load(results / f"{name}.json") for name in ("data", "model", "train"))
    head = model or train
    if head is None:
        print("gpu.sh: no measurement finished", file=sys.stderr)
        return 1
    print(f"\nalexnet GPU benchmarks: {head['device_name']}, torch {head['torch']}, {head['date']}, "
          f"batch {head['batch_size']}, {head['arch']}, JPEGs decoded by {head.get('jpeg_decoder', '?')} "
          f"in the loader's workers")
    print(f"{'measurement':44s} {'images/s':>9s} {'vs base':>8s}  baseline")
    for name, rate, ratio, base in rows(data, model, train):
        print(f"{name:44s} {rate:>9s} {ratio:>8s}  {base}")
    for profiled in (model or {}).get("profiles", []):
        print(f"\nwhere the time of a {profiled['setting']} step goes (self time per step, top kernels):")
        for e in profiled["top"]:
            print(f"  {e['ms_per_step']:7.3f} ms {100 * e['share']:5.1f}%  x{e['calls_per_step']:<4g} {e['name'][:100]}")
    for name, record in (("bench data", data), ("bench model", model), ("bench train", train)):
        if record is None:
            print(f"{name}: no result (see the log above)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
