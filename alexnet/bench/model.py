"""`alexnet bench model`: training-step images/s of each speed setting (the same function, :mod:`alexnet.speed`)
against plain PyTorch (``plain``: ``nn.LocalResponseNorm``, NCHW, float32, eager, ``torch.optim.SGD``) in one
process, from the same weights, on the same batch on the device; ``vs plain``: images/s over plain's,
``cpu vs plain``: the same for host CPU time per step."""

import copy
import math
from dataclasses import asdict

import torch
import torch.nn.functional as F

from alexnet import speed
from alexnet.bench.common import (Rows, check_counts, output, peak_memory, print_table, progress, setup,
                                  synchronize, timed_for)
from alexnet.bench.settings import DEFAULT_SETTINGS, SETTINGS, Setting
from alexnet.errors import UserError
from alexnet.registry import build_model
from alexnet.train.config import TrainConfig, parse_model_options
from alexnet.train.optim import make_optimizer


def skip_reason(setting: Setting, device: torch.device) -> str | None:
    """Why ``setting`` does not apply on ``device`` (None when it does)."""
    if device.type == "cpu" and setting.amp == "fp16":
        return "float16 autocast has no fast CPU kernels (bfloat16 is the CPU's half precision)"
    if device.type == "cpu" and setting.amp == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "this CPU has no bfloat16 instructions for oneDNN"
    if device.type == "cuda" and setting.amp == "bf16" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bfloat16 support"
    if device.type not in ("cpu", "cuda") and (setting.amp or setting.compile):
        return f"autocast and compile are measured on cpu and cuda only, not {device.type}"
    return None


class Runner:
    """One setting's network, optimizer and step on ``x`` and ``labels`` (bench train sets them each step)."""

    def __init__(self, setting: Setting, base: torch.nn.Module, device: torch.device, optimizer_step: bool,
                 x: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        self.setting, self.device, self.labels = setting, device, labels
        model = copy.deepcopy(base).to(device)
        self.model = speed.apply_speed_options(
            model, lrn=setting.lrn, channels_last=setting.channels_last, compile=setting.compile,
            relu_inplace=setting.fused, conv1_stride1_grad=setting.fused and device.type == "cpu")
        self.x = x.contiguous(memory_format=torch.channels_last) if setting.channels_last and x is not None else x
        self.optimizer = None
        if optimizer_step:
            self.optimizer = (make_optimizer(model, TrainConfig()) if setting.fused else torch.optim.SGD(
                model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005))  # ours: the paper's update
        self.scaler = torch.amp.GradScaler(device.type, enabled=setting.amp == "fp16")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setting.amp)

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on ``x`` and ``labels``; the logits and the loss."""
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
        return logits, loss


def device_kernels(events, cuda: bool, steps: int, top: int) -> list[dict]:
    """The ``top`` of ``events`` (``torch.profiler``'s key averages) by self time per step, with their
    shares; on CUDA kernels only (operators and user annotations would count them twice)."""
    field = "self_device_time_total" if cuda else "self_cpu_time_total"
    wanted = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    kept = [e for e in events if getattr(e, "device_type", wanted) == wanted and getattr(e, field, 0) > 0
            and not getattr(e, "is_user_annotation", False)]
    total = sum(getattr(e, field) for e in kept) or 1.0
    kept.sort(key=lambda e: getattr(e, field), reverse=True)
    return [{"name": e.key, "ms_per_step": getattr(e, field) / 1000 / steps, "calls_per_step": e.count / steps,
             "share": getattr(e, field) / total} for e in kept[:top]]


def profile_step(runner: Runner, device: torch.device, steps: int = 3, top: int = 12) -> list[dict]:
    """The ``top`` operators (CPU) or kernels (CUDA) of ``runner``'s step by self time, over ``steps`` steps."""
    cuda = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            runner.step()
        synchronize(device)
    return device_kernels(prof.key_averages(), cuda, steps, top)


def benchmark(arch: str = "alexnet", batch_size: int = 128, device: str | None = None,
              settings: list[str] | None = None, steps: int | None = None, warmup: int | None = None,
              rounds: int = 1, optimizer_step: bool = False, threads: int | None = None,
              model_options: dict | None = None, keep_freed_memory: bool = False, flush_denormal: bool = False,
              profile: list[str] | None = None, seconds: float | None = None, warmup_seconds: float = 0.0,
              rows: str | None = None, report=progress) -> dict:
    """Measure ``settings`` (and ``plain``) on ``device``; returns the record printed as JSON. Rounds
    alternate the order; each setting keeps its best. ``profile``: settings to profile afterwards."""
    device, head = setup(device, threads, keep_freed_memory, flush_denormal)
    names = list(settings or DEFAULT_SETTINGS.get(device.type, ["plain", "ours-lrn"]))
    if unknown := [n for n in names if n not in SETTINGS]:
        raise UserError(f"--settings: unknown {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    names = ["plain"] + [n for n in dict.fromkeys(names) if n != "plain"]
    if missing := [n for n in profile or [] if n not in names]:
        raise UserError(f"--profile {missing[0]}: not among the settings measured ({', '.join(names)})")
    steps = steps or (20 if device.type == "cuda" else 3)
    base = build_model(arch, **(model_options or {}))
    x = (torch.randn(batch_size, 3, base.input_size, base.input_size) * 60).to(device)
    labels = torch.randint(0, base.options["num_classes"], (batch_size,)).to(device)
    out = Rows(rows, {**head, "kind": "model", "arch": arch, "batch_size": batch_size})
    runners, results = {}, {}
    for name in names:
        setting = SETTINGS[name]
        results[name] = {**asdict(setting), "skipped": skip_reason(setting, device), **dict.fromkeys(
            ("images_per_s", "step_ms", "cpu_ms", "ratio", "cpu_ratio", "peak_memory"))}
        if results[name]["skipped"] is None:
            runners[name] = Runner(setting, base, device, optimizer_step, x, labels)
        else:
            out.add({"setting": name, "skipped": results[name]["skipped"]})
    if "plain" in runners and warmup_seconds:  # a GPU idles at low clocks and takes a while to raise them
        timed_for(device, runners["plain"].step, warmup_seconds)
    for round_ in range(rounds):
        for name, runner in list(runners.items())[::-1 if round_ % 2 else 1]:
            try:
                if round_ == 0:
                    for _ in range(warmup if warmup is not None else 3 if runner.setting.compile else 1):
                        runner.step()
                peak_memory(device, reset=True)
                step_s, cpu_s, count = timed_for(device, runner.step, seconds, steps)
            except Exception as err:  # noqa: BLE001 - one setting failing (compile) must not hide the rest
                results[name]["skipped"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
                report(f"{name}: {results[name]['skipped']}")
                out.add({"setting": name, "skipped": results[name]["skipped"]})
                del runners[name]
                continue
            r = results[name]
            row = {"images_per_s": batch_size / step_s, "step_ms": step_s * 1000, "cpu_ms": cpu_s * 1000}
            if r["step_ms"] is None or row["step_ms"] < r["step_ms"]:
                r.update(step_ms=row["step_ms"], images_per_s=row["images_per_s"])
            r.update(cpu_ms=min(r["cpu_ms"] or math.inf, row["cpu_ms"]), peak_memory=peak_memory(device))
            out.add({"setting": name, "about": r["about"], "round": round_ + 1, "steps": count, **row,
                     "peak_memory": r["peak_memory"]})
            report(f"round {round_ + 1}/{rounds} {name}: {row['images_per_s']:.1f} images/s")
    plain = results["plain"]
    for r in results.values():
        if r["images_per_s"] is not None and plain["images_per_s"] is not None:
            r["ratio"] = r["images_per_s"] / plain["images_per_s"]
            r["cpu_ratio"] = plain["cpu_ms"] / r["cpu_ms"] if r["cpu_ms"] else None
    profiles = []
    for name in [n for n in profile or [] if n in runners]:  # not those that failed or were skipped
        report(f"profiling {name} ...")
        profiles.append(out.add({"setting": name, "profile": profile_step(runners[name], device)}))
    return {"kind": "model", "arch": arch, "batch_size": batch_size, "input_size": base.input_size,
            "model_options": base.options, "optimizer_step": optimizer_step, "steps": steps, "seconds": seconds,
            "rounds": rounds, **head, "baseline": "plain", "settings": list(results.values()),
            "profiles": [{"setting": p["setting"], "top": p["profile"]} for p in profiles]}


def print_record(record: dict) -> None:
    what = "forward+backward+SGD step" if record["optimizer_step"] else "forward+backward"
    print(f"alexnet bench model: {record['arch']} at batch {record['batch_size']}, {what}, "
          f"{record['device']} ({record['device_name']}, {record['threads']} threads), "
          f"best of {record['rounds']} round(s) of {record['steps']} steps, {record['date']}, "
          f"load average {record['load_average']} at the end")
    rows = [[r["name"], f"{r['images_per_s']:.1f}", f"{r['step_ms']:.1f}", f"{r['ratio']:.2f}x" if r["ratio"] else "-",
             *((f"{r['cpu_ms']:.0f}", f"{r['cpu_ratio']:.2f}x") if r["cpu_ratio"] else ("-", "-")), r["about"]]
            for r in record["settings"] if not r["skipped"]]
    print_table(["setting", "images/s", "ms/step", "vs plain", "cpu ms/step", "cpu vs plain", "what"], rows)
    for r in record["settings"]:
        if r["skipped"]:
            print(f"  {r['name']}: skipped: {r['skipped']}")
    for profiled in record.get("profiles", []):
        print(f"\nwhere the time of a {profiled['setting']} step goes (self time, top {len(profiled['top'])}):")
        print_table(["kernel or operator", "ms/step", "share", "calls"],
                    [[e["name"][:100], f"{e['ms_per_step']:.2f}", f"{100 * e['share']:.1f}%",
                      f"{e['calls_per_step']:g}"] for e in profiled["top"]])


def run(args) -> int:
    check_counts(args, ("batch_size", "steps", "rounds", "threads"), ("warmup", "seconds", "warmup_seconds"))
    record = benchmark(args.arch, args.batch_size, args.device, args.settings, args.steps, args.warmup, args.rounds,
                       args.optimizer_step, args.threads, parse_model_options(args.model_option),
                       keep_freed_memory=args.keep_freed_memory, flush_denormal=args.flush_denormal,
                       profile=args.profile, seconds=args.seconds, warmup_seconds=args.warmup_seconds, rows=args.rows)
    return output(record, args.json, print_record)
