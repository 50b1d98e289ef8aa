"""The one table benchmarks/gpu.sh prints, from whatever rows its stages wrote (RESULTS_DIR/rows.jsonl,
one JSON line per measurement); a stage stopped part-way shows the rows it finished.

    python benchmarks/gpu_table.py RESULTS_DIR [RESULTS_DIR ...]

Several folders (a first try and a second one that ran the missing stages) make one table; each
ratio compares rows of the same folder, measured in the same run.
"""

import json
import sys
from pathlib import Path

ONE_GPU = ("What one GPU cannot show: the paper's two-GPU model (the towers on two GPUs talking at "
           "layers 3 and the fully connected ones) and multi-GPU scaling (DDP, several GPUs' loaders "
           "sharing one host's cores); the end-to-end rates are for one GPU fed by this host's cores.")


def read_rows(folder: Path) -> list[dict]:
    """The rows of ``folder``/rows.jsonl; a line cut short by a kill is skipped."""
    rows = []
    path = folder / "rows.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def gib(n) -> str:
    return f"{n / 2**30:.1f} GiB" if n else "-"


def data_lines(rows):
    ways = {r["way"]: r for r in rows if r.get("kind") == "data"}
    ours, usual = ways.get("pipeline"), ways.get("usual_way")
    for label, r in (("ours (loader workers)", ours), ("the usual per-image way", usual)):
        if r:
            ratio = ours and usual and ours["images_per_s"] / usual["images_per_s"]
            cpu = ours and usual and (ours["images_per_worker_cpu_s"] or 0) / (usual["images_per_worker_cpu_s"] or 1)
            yield (f"input pipeline: {label}, {r['workers']} workers", r["images_per_s"],
                   ratio if r is ours else 1.0, f"per worker CPU second: {r['images_per_worker_cpu_s']} "
                   f"images{f', {cpu:.2f}x' if r is ours and cpu else ''}; {r['images']} images")


def model_lines(rows):
    best = {}
    for r in (r for r in rows if r.get("kind") == "model" and "setting" in r and "profile" not in r):
        b = best.setdefault(r["setting"], {"skipped": None, "images_per_s": 0, "cpu_ms": None, "rounds": 0})
        if "skipped" in r:
            b["skipped"] = r["skipped"]
        else:
            b["rounds"] += 1
            b["images_per_s"] = max(b["images_per_s"], r["images_per_s"])
            b["cpu_ms"] = min(b["cpu_ms"] or r["cpu_ms"], r["cpu_ms"])
            b.update(batch=r["batch_size"], peak=r.get("peak_memory"))
    plain = best.get("plain", {})
    for name, b in best.items():
        if not b["rounds"]:
            yield f"model step: {name}", None, None, f"skipped: {b['skipped']}"
            continue
        ratio = plain.get("images_per_s") and b["images_per_s"] / plain["images_per_s"]
        cpu = plain.get("cpu_ms") and plain["cpu_ms"] / b["cpu_ms"]
        yield (f"model step: {name}, batch {b['batch']}", b["images_per_s"], ratio,
               f"best of {b['rounds']} round(s); host CPU per step {b['cpu_ms']:.1f} ms"
               f"{f', {cpu:.2f}x plain' if cpu else ''}; peak memory {gib(b['peak'])}")


def train_lines(rows):
    train = [r for r in rows if r.get("kind") == "train"]
    for batch in dict.fromkeys(r["batch_size"] for r in train):
        runs = [r for r in train if r["batch_size"] == batch]
        base = next((r for r in reversed(runs) if r["decode"] == "examples" and "images_per_s" in r), None)
        for r in runs:
            way = ("pytorch/examples way" if r["decode"] == "examples" else
                   f"ours ({r['setting']}), decoding in {r['decode']}")
            label = f"end to end, batch {batch}: {way}, {r['workers']} workers"
            if "skipped" in r:
                yield label, None, None, f"skipped: {r['skipped']}"
                continue
            cpu = f"{100 * r['host_cpu_use']:.0f}%" if r.get("host_cpu_use") is not None else "-"
            per_cpu = r.get("images_per_host_cpu_s")
            cpu_ratio = base and per_cpu and base.get("images_per_host_cpu_s") and per_cpu / base["images_per_host_cpu_s"]
            yield (label, r["images_per_s"], base and r["images_per_s"] / base["images_per_s"],
                   f"waits for data {100 * r['data_wait_share']:.0f}%, host CPU busy {cpu}, {per_cpu} images "
                   f"per host CPU second{f' ({cpu_ratio:.2f}x)' if cpu_ratio else ''}, "
                   f"peak memory {gib(r.get('peak_memory'))}")


def table(folders: list[list[dict]]) -> None:
    rows = [r for f in folders for r in f]
    host = next((r for r in rows if r.get("kind") == "host"), {})
    bench = next((r for r in rows if "device_name" in r), {})
    print(f"\nalexnet GPU benchmarks: {host.get('gpu') or bench.get('device_name', '?')}, driver "
          f"{host.get('driver')}, torch {host.get('torch') or bench.get('torch')} (CUDA {host.get('cuda')}), "
          f"{host.get('date') or bench.get('date')}, {host.get('cores')} cores, /dev/shm {gib(host.get('shm_bytes'))}, "
          f"JPEGs decoded by {bench.get('jpeg_decoder', '?')} in the loader's workers")
    if "tf32_matmul" in bench:
        print(f"TF32 matmul {bench['tf32_matmul']}, cuDNN {bench['tf32_cudnn']}: the same for the baselines and "
              "ours (one process; the trainer's setting)")
    if host.get("shm_small"):
        print("WARNING: /dev/shm was smaller than the loaders need; loader failures may come from it")
    print(f"{'measurement':62s} {'images/s':>9s} {'vs base':>8s}  notes")
    for name, rate, ratio, notes in (line for f in folders for line in (*data_lines(f), *model_lines(f),
                                                                         *train_lines(f))):
        shown = (f"{rate:.0f}", f"{ratio:.2f}x" if ratio else "-") if rate else ("-", "-")
        print(f"{name:62s} {shown[0]:>9s} {shown[1]:>8s}  {notes}")
    print("(vs base: the usual way, plain PyTorch, or the pytorch/examples way at the same batch, same run)")
    for r in (r for r in rows if "profile" in r):
        top = r["profile"]
        print(f"\nwhere the time of a {r['setting']} step goes (device kernels by self time per step; these "
              f"{len(top)} take {100 * sum(e['share'] for e in top):.0f}% of all kernel time):")
        for e in top:
            print(f"  {e['ms_per_step']:7.3f} ms {100 * e['share']:5.1f}%  x{e['calls_per_step']:<4g} {e['name'][:100]}")
    missing = [k for k in ("data", "model", "train") if not any(r.get("kind") == k for r in rows)]
    if missing:
        print(f"\nno rows from: {', '.join(missing)} (not run, or stopped before a first row; see log.txt)")
    print(f"\n{ONE_GPU}")


def main(folders: list[str]) -> int:
    rows = [read_rows(Path(folder)) for folder in folders]
    if not any(rows):
        print(f"gpu_table.py: no rows in {', '.join(folders)}", file=sys.stderr)
        return 1
    table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
