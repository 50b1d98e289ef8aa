"""`alexnet bench model`: training-step images/s of the network for each speed setting, against
plain PyTorch measured in the same run.

The baseline, ``plain``, is our network with every LRN computed by ``nn.LocalResponseNorm``
(alpha times n: the same function), NCHW memory, float32, eager, ``torch.optim.SGD`` with its
defaults: the network as one would write it with PyTorch's own layers. Every other setting
computes the same function (tests/test_speed.py) with one or more speed knobs of
:mod:`alexnet.speed` switched on; ``vs plain`` is its images/s over the baseline's. All settings
start from the same weights and see the same random batch, kept on the device: this measures the
network and its step, not the input pipeline (``alexnet bench train`` does both).

Settings that cannot run on the device are listed as skipped, with the reason.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict

import torch
import torch.nn.functional as F

from alexnet import speed
from alexnet.bench.common import check_counts, machine, output, print_table, process_knobs, progress, timed
from alexnet.bench.settings import DEFAULT_SETTINGS, SETTINGS, Setting
from alexnet.devices import pick_device
from alexnet.errors import UserError
from alexnet.registry import build_model
from alexnet.train.config import parse_model_options
from alexnet.train.optim import fast_sgd


def skip_reason(setting: Setting, device: torch.device) -> str | None:
    """Why ``setting`` does not apply on ``device`` (None when it does)."""
    if device.type == "cpu":
        if setting.amp == "fp16":
            return "float16 autocast has no fast CPU kernels (bfloat16 is the CPU's half precision)"
        if setting.amp == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return "this CPU has no bfloat16 instructions for oneDNN"
    if device.type == "cuda" and setting.amp == "bf16" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bfloat16 support"
    if device.type not in ("cpu", "cuda") and (setting.amp or setting.compile):
        return f"autocast and compile are measured on cpu and cuda only, not {device.type}"
    return None


class Runner:
    """One setting's network, optimizer and step on a fixed batch."""

    def __init__(self, setting: Setting, base: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor,
                 device: torch.device, optimizer_step: bool):
        self.setting, self.device, self.labels = setting, device, labels
        model = copy.deepcopy(base).to(device)
        self.model = speed.apply_speed_options(
            model, lrn=setting.lrn, channels_last=setting.channels_last, compile=setting.compile,
            relu_inplace=setting.fused, conv1_stride1_grad=setting.fused and device.type == "cpu")
        self.x = x.contiguous(memory_format=torch.channels_last) if setting.channels_last else x
        self.optimizer = None
        if optimizer_step:
            params = model.parameters()
            self.optimizer = (fast_sgd(params, lr=0.01, device=device) if setting.fused else
                              torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=0.0005))
        self.scaler = torch.amp.GradScaler(device.type, enabled=setting.amp == "fp16")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setting.amp)

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.model(self.x)
        loss = F.cross_entropy(logits.float(), self.labels)
        self.scaler.scale(loss).backward()
        if self.optimizer is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.model.zero_grad(set_to_none=True)


def profile_step(runner: Runner, device: torch.device, steps: int = 3, top: int = 12) -> list[dict]:
    """Where one setting's step spends its time: the ``top`` operators (CPU) or kernels (CUDA) by
    self time, per step, from ``torch.profiler`` over ``steps`` steps after the timed ones."""
    from torch.profiler import ProfilerActivity, profile

    from alexnet.bench.common import synchronize

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            runner.step()
        synchronize(device)
    field = "self_device_time_total" if cuda else "self_cpu_time_total"
    # On CUDA the kernels themselves (and copies), not the operators that launched them, whose
    # device time would count the same kernels twice.
    wanted = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    events = [e for e in prof.key_averages()
              if getattr(e, "device_type", wanted) == wanted and getattr(e, field, 0) > 0]
    total = sum(getattr(e, field) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, field), reverse=True)
    return [{"name": e.key, "ms_per_step": getattr(e, field) / 1000 / steps, "calls_per_step": e.count / steps,
             "share": getattr(e, field) / total} for e in events[:top]]


def benchmark(arch: str = "alexnet", batch_size: int = 128, device: str | None = None,
              settings: list[str] | None = None, steps: int | None = None, warmup: int | None = None,
              rounds: int = 1, optimizer_step: bool = False, threads: int | None = None,
              model_options: dict | None = None, keep_freed_memory: bool = False,
              flush_denormal: bool = False, profile: list[str] | None = None, report=progress) -> dict:
    """Measure ``settings`` (and ``plain``) on ``device``; returns the record printed as JSON.
    ``profile``: settings among them to profile afterwards (:func:`profile_step`); one that
    failed or was skipped is left out."""
    device = pick_device(device)
    names = list(settings or DEFAULT_SETTINGS.get(device.type, ["plain", "ours-lrn", "channels-last"]))
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise UserError(f"--settings: unknown {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    names = ["plain"] + [n for n in dict.fromkeys(names) if n != "plain"]
    for name in profile or []:
        if name not in names:
            raise UserError(f"--profile {name}: not among the settings measured ({', '.join(names)})")
    steps = steps or (20 if device.type == "cuda" else 3)
    threads = speed.set_threads(threads)
    knobs = process_knobs(keep_freed_memory, flush_denormal)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    base = build_model(arch, **(model_options or {}))
    num_classes = base.options["num_classes"]
    x = (torch.randn(batch_size, 3, base.input_size, base.input_size) * 60).to(device)
    labels = torch.randint(0, num_classes, (batch_size,)).to(device)

    runners, results = {}, {}
    for name in names:
        setting = SETTINGS[name]
        results[name] = {**asdict(setting), "skipped": skip_reason(setting, device),
                         "images_per_s": None, "step_ms": None, "cpu_ms": None, "ratio": None,
                         "cpu_ratio": None}
        if results[name]["skipped"] is None:
            runners[name] = Runner(setting, base, x, labels, device, optimizer_step)
    for round_ in range(rounds):
        for name, runner in list(runners.items()):
            first = round_ == 0
            try:
                for _ in range((warmup if warmup is not None else 3 if runner.setting.compile else 1)
                               if first else 0):
                    runner.step()
                seconds, cpu_seconds = timed(device, runner.step, steps)
            except Exception as err:  # noqa: BLE001 - one setting failing (compile) must not hide the rest
                results[name]["skipped"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
                report(f"{name}: {results[name]['skipped']}")
                del runners[name]
                continue
            best = results[name]["step_ms"]
            if best is None or seconds * 1000 < best:
                results[name]["step_ms"] = seconds * 1000
                results[name]["images_per_s"] = batch_size / seconds
            if device.type == "cpu":  # the process's CPU time is the device's time only here
                best_cpu = results[name]["cpu_ms"]
                results[name]["cpu_ms"] = min(best_cpu or math.inf, cpu_seconds * 1000)
            report(f"round {round_ + 1}/{rounds} {name}: {batch_size / seconds:.1f} images/s")
    plain = results["plain"]
    for r in results.values():
        if r["images_per_s"] is not None and plain["images_per_s"] is not None:
            r["ratio"] = r["images_per_s"] / plain["images_per_s"]
            r["cpu_ratio"] = plain["cpu_ms"] / r["cpu_ms"] if r["cpu_ms"] else None
    profiles = []
    for name in profile or []:
        if name in runners:
            report(f"profiling {name} ...")
            profiles.append({"setting": name, "top": profile_step(runners[name], device)})
    return {"kind": "model", "arch": arch, "batch_size": batch_size, "input_size": base.input_size,
            "model_options": base.options, "optimizer_step": optimizer_step, "steps": steps,
            "rounds": rounds, **machine(device, threads, knobs), "baseline": "plain",
            "settings": list(results.values()), "profiles": profiles}


def print_record(record: dict) -> None:
    what = "forward+backward+SGD step" if record["optimizer_step"] else "forward+backward"
    print(f"alexnet bench model: {record['arch']} at batch {record['batch_size']}, {what}, "
          f"{record['device']} ({record['device_name']}, {record['threads']} threads), "
          f"best of {record['rounds']} round(s) of {record['steps']} steps, {record['date']}, "
          f"load average {record['load_average']} at the end")
    rows, skipped = [], []
    for r in record["settings"]:
        if r["skipped"]:
            skipped.append(f"  {r['name']}: skipped: {r['skipped']}")
            continue
        cpu = (f"{r['cpu_ms']:.0f}", f"{r['cpu_ratio']:.2f}x") if r["cpu_ratio"] else ("-", "-")
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        rows.append([r["name"], f"{r['images_per_s']:.1f}", f"{r['step_ms']:.1f}", ratio, *cpu,
                     r["about"]])
    print_table(["setting", "images/s", "ms/step", "vs plain", "cpu ms/step", "cpu vs plain", "what"], rows)
    for line in skipped:
        print(line)
    for profiled in record.get("profiles", []):
        print_profile(profiled)


def print_profile(profiled: dict) -> None:
    print(f"\nwhere the time of a {profiled['setting']} step goes (self time, top {len(profiled['top'])}):")
    print_table(["kernel or operator", "ms/step", "share", "calls"],
                [[e["name"][:100], f"{e['ms_per_step']:.2f}", f"{100 * e['share']:.1f}%",
                  f"{e['calls_per_step']:g}"] for e in profiled["top"]])


def run(args) -> int:
    check_counts(args, ("batch_size", "steps", "rounds", "threads"), ("warmup",))
    record = benchmark(args.arch, args.batch_size, args.device, args.settings, args.steps, args.warmup,
                       args.rounds, args.optimizer_step, args.threads, parse_model_options(args.model_option),
                       keep_freed_memory=args.keep_freed_memory,
                       flush_denormal=args.flush_denormal, profile=args.profile)
    return output(record, args.json, print_record)
