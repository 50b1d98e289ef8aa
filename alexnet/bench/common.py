"""What the benchmarks share: the clock, the record of the machine, the output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time

import torch

from alexnet import speed
from alexnet.cores import available_cores
from alexnet.errors import UserError


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read afterwards includes it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn, repeats: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds per call of ``fn`` over ``repeats`` calls, with one device
    sync at each end only. On a busy machine the CPU seconds (all threads of this process) vary
    less than the wall clock, which includes the time other jobs held the cores."""
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats, (time.process_time() - cpu_start) / repeats


def cpu_name() -> str:
    """The processor's model name (Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def process_knobs(keep_freed_memory: bool, flush_denormal: bool) -> dict:
    """Apply the process-wide CPU knobs asked for; what took effect, for the record."""
    return {"keep_freed_memory": keep_freed_memory and speed.keep_freed_memory(),
            "flush_denormal": flush_denormal and torch.set_flush_denormal(True)}


def machine(device: torch.device, threads: int, knobs: dict) -> dict:
    """The facts a benchmark record needs: what ran, where, when."""
    from alexnet.data.images import jpeg_library

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": str(device), "device_name": name, "threads": threads, "jpeg_decoder": jpeg_library(),
            **knobs,
            "cores": available_cores(),
            "load_average": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None, "torch": torch.__version__,
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


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
        emit_json(record)
    else:
        print_record(record)
    return 0


def print_table(header: list[str], rows: list[list[str]], out=sys.stdout) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths))), file=out)


def emit_json(record: dict) -> None:
    print(json.dumps(record, indent=2))


def progress(message: str) -> None:
    """One line of progress on stderr (stdout stays the table or the JSON)."""
    print(message, file=sys.stderr, flush=True)
