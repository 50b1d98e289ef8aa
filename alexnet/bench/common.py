"""What the benchmarks share: the set-up, the clock, the record of the machine, the rows, the output."""

import contextlib
import datetime
import json
import math
import os
import platform
import sys
import time

import torch

from alexnet import speed
from alexnet.cores import available_cores
from alexnet.data.images import jpeg_library
from alexnet.devices import pick_device
from alexnet.errors import UserError


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read afterwards includes it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_for(device: torch.device, fn, seconds: float | None, steps: int = 1) -> tuple[float, float, int]:
    """Wall-clock and process CPU seconds per call of ``fn``, and the number of calls: ``steps``, or as
    many as fill ``seconds`` (at least one) in runs of 1, 2, 4 ..., the last sized to end near it."""
    synchronize(device)
    start, cpu_start, calls, run = time.perf_counter(), time.process_time(), 0, 1 if seconds else steps
    while True:
        for _ in range(run):
            fn()
        synchronize(device)
        calls, elapsed = calls + run, time.perf_counter() - start
        if not seconds or elapsed >= seconds:
            return elapsed / calls, (time.process_time() - cpu_start) / calls, calls
        run = max(1, min(2 * run, math.ceil((seconds - elapsed) * calls / elapsed) if elapsed > 0 else 2 * run))


def host_cpu_times() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (Linux; else None)."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle and iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def peak_memory(device: torch.device, reset: bool = False) -> int | None:
    """The most bytes of device memory tensors held since the last reset (CUDA; else None)."""
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device)
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
    return peak


def cpu_name() -> str:
    """The processor's model name (Linux), else what the platform module knows."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def setup(device: str | None, threads: int | None, keep_freed_memory: bool, flush_denormal: bool):
    """The device, threads, process knobs, the trainer's cuDNN and TF32 settings (so the baseline and
    ours share them), seed 0; returns the device and the record of the machine: what ran, where, when."""
    device = pick_device(device)
    threads = speed.set_threads(threads)
    knobs = {"keep_freed_memory": keep_freed_memory and speed.keep_freed_memory(),
             "flush_denormal": flush_denormal and torch.set_flush_denormal(True)}  # what took effect
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as alexnet train
        knobs.update(tf32_matmul=True, tf32_cudnn=True)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return device, {"device": str(device), "device_name": name, "threads": threads, "jpeg_decoder": jpeg_library(),
                    **knobs, "cuda": torch.version.cuda, "cores": available_cores(),
                    "load_average": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


class Rows:
    """Each row, with ``head``, appended to ``path`` (JSON lines) the moment it exists: a stopped run keeps it."""

    def __init__(self, path: str | None, head: dict):
        self.path, self.head = path, head

    def add(self, row: dict) -> dict:
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps({**self.head, **row}) + "\n")
        return row


def check_counts(args, positive: tuple[str, ...], non_negative: tuple[str, ...] = ()) -> None:
    """Reject counts out of range, naming the option."""
    for names, low, what in ((positive, 1, "positive"), (non_negative, 0, ">= 0")):
        for name in names:
            value = getattr(args, name)
            if value is not None and value < low:
                raise UserError(f"--{name.replace('_', '-')} must be {what}, got {value}")


def output(record: dict, as_json: bool, print_record) -> int:
    """The record as JSON or as ``print_record`` shows it; the exit status."""
    if as_json:
        print(json.dumps(record, indent=2))
    else:
        print_record(record)
    return 0


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths))))


def progress(message: str) -> None:
    """One line of progress on stderr (stdout stays the table or the JSON)."""
    print(message, file=sys.stderr, flush=True)
