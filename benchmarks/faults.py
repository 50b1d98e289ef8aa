"""The fault suite: hostile and careless inputs and killed processes, through the real commands.

Usage: python3 benchmarks/faults.py [--json FILE] [--keep] [--only WORD]

It builds its own small data in a temporary folder (an image folder of three classes of small
JPEGs written with Pillow, prepared with ``alexnet prepare``; tests/kit.py's TinyNet), then runs
each case as a subprocess (``python3 -m alexnet ...``; ``python3 -m tests.kit train ...``, which is
``alexnet train`` with the tiny network registered) under a timeout that serves as hang detector.
Each case expects one of:

- refused: exit status 2, the last line of standard error ``alexnet CMD: error: ...`` (one line,
  naming what the case names), no ``Traceback``, and nothing run from the file (marker files absent);
- handled: exit status 0 (1 for ``--verify`` of a damaged dataset), the bad item skipped, named, or
  shown harmlessly (escaped on the terminal, as text on the report's page);
- survived: a process killed part-way (SIGKILL or SIGTERM), then resumed or run again, ends with outputs
  identical to an uninterrupted run (every tensor of last.pt equal, bit for bit; every prepared file equal;
  a killed convert's temporary removed by the next).

It prints a table (group, case, command, expected, got, held) and ``N cases: K held, F failed``; the
exit status is 1 when any case failed. docs/reliability.md says which tests back each promise.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.kit import descendants, process_state  # noqa: E402 - after the root is on the path
TIMEOUT = 120  # seconds: every case takes a few; a case still running then hangs
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TINY_SIGNAL": "", "TINY_SLEEP": "0"}
CLASSES = ("ant", "bee", "cat")
SIZE = 80  # stored side: the tiny AlexNet's 67-pixel input fits


@dataclass
class Result:
    group: str
    case: str
    command: str
    expected: str
    got: str
    held: bool
    seconds: float


@dataclass
class Run:
    rc: int | None  # None: killed by the hang detector
    out: str
    err: str


def run(argv: list, entry: str = "alexnet", env: dict | None = None, timeout: float = TIMEOUT,
        cwd: Path = ROOT) -> Run:
    """``python3 -m ENTRY ARGV`` in its own session; on timeout the whole group is killed."""
    proc = subprocess.Popen([sys.executable, "-m", entry, *map(str, argv)], cwd=cwd, env={**ENV, **(env or {})},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return Run(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Run(None, out, err)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def short(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def refused(r: Run, command: str, *needles: str, markers: tuple = ()) -> tuple[str, bool]:
    """Exit 2 with one ``alexnet COMMAND: error:`` line naming every needle, no traceback, no marker made."""
    if r.rc is None:
        return f"hung (killed after {TIMEOUT} s)", False
    line = last_line(r.err)
    errors = [x for x in r.err.splitlines() if x.startswith(f"alexnet {command}: error: ")]
    made = [str(m) for m in markers if Path(m).exists()]
    held = (r.rc == 2 and "Traceback" not in r.err and len(errors) == 1 and line == errors[0]
            and all(n in line for n in needles) and not made)
    got = f"exit {r.rc}: {line}" + (f" [CODE RAN: {made}]" if made else "")
    if "Traceback" in r.err:
        got += " [Traceback]"
    return got, held


def exited(r: Run, status: int = 0) -> tuple[str, bool]:
    if r.rc is None:
        return f"hung (killed after {TIMEOUT} s)", False
    ok = r.rc == status and "Traceback" not in r.err
    return f"exit {r.rc}" + ("" if ok else f": {last_line(r.err)}"), ok


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".partial" not in p.parts}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def jpeg(seed: int, c: int, size=(96, 88)) -> bytes:
    """A noisy JPEG around class ``c``'s colour."""
    colour = np.array([(200, 40, 40), (40, 200, 40), (40, 40, 200)][c % 3])
    pixels = np.clip(colour + np.random.default_rng(seed).integers(-40, 40, (size[1], size[0], 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def image_folder(root: Path, train: int = 8, val: int = 3, splits=("train", "val")) -> Path:
    for split, count in (("train", train), ("val", val)):
        if split not in splits:
            continue
        for c, name in enumerate(CLASSES):
            for i in range(count):
                write(root / split / name / f"{name}_{i}.jpg", jpeg(1000 * c + i + (500 if split == "val" else 0), c))
    return root


def png_claiming(width: int, height: int) -> bytes:
    """A 16-bit greyscale PNG of a few bytes whose header claims ``width`` x ``height`` pixels."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((1, 1), np.uint16)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


class RunsCode:
    """Unpickling this calls os.system: code run from a data file, which must never happen."""

    def __init__(self, marker: Path):
        self.command = f"touch {marker}"

    def __reduce__(self):
        return (os.system, (self.command,))


def skipped(out: Path, split: str = "train") -> dict[str, str]:
    meta = json.loads((out / "meta.json").read_text())
    return {Path(s["path"]).name: s["reason"] for s in meta["splits"][split]["skipped"]}


def final_weights(run_dir: Path) -> dict:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def metrics(run_dir: Path) -> list[dict]:
    drop = ("images_per_s", "data_wait_share", "seconds")
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def same_run(a: Path, b: Path) -> tuple[str, bool]:
    import torch

    try:
        wa, wb = final_weights(a), final_weights(b)
    except Exception as err:  # noqa: BLE001 (a missing or broken last.pt is this case's failure)
        return f"no final checkpoint: {err}", False
    differ = [k for k in wa if k not in wb or not torch.equal(wa[k], wb[k])] + [k for k in wb if k not in wa]
    if differ:
        return f"weights differ: {differ[:3]}", False
    if metrics(a) != metrics(b):
        return "weights equal, metrics.jsonl differs", False
    return f"all {len(wa)} tensors equal, metrics equal", True


# ---------------------------------------------------------------- the fixtures, built once


class World:
    """The temporary folder and the data every case starts from."""

    def __init__(self, root: Path):
        self.root = root
        self.n = 0
        self.src = image_folder(root / "src")
        r = run(["prepare", self.src, root / "data", "--size", SIZE, "--workers", 1, "--shard-size", 8])
        if r.rc != 0:
            raise SystemExit(f"could not prepare the suite's data: {r.err[-2000:]}")
        self.data = root / "data"
        self.model3 = self.model_file("model3.pt", 3)
        self.model10 = self.model_file("model10.pt", 10)
        self.image = write(root / "img.jpg", jpeg(7, 0, (120, 100)))
        self.whole_run = root / "whole-run"
        self.whole = run(["train", *self.train_args(), "--out", self.whole_run], entry="tests.kit")

    def fresh(self, name: str) -> Path:
        """An empty folder for one case."""
        self.n += 1
        path = self.root / f"case{self.n:02d}-{name}"
        path.mkdir()
        return path

    def model_file(self, name: str, classes: int) -> Path:
        """The paper's network, shrunk (tests/kit.py's TINY options), with the data's mean image."""
        import torch

        from alexnet import build_model, save_model

        torch.manual_seed(0)
        model = build_model("alexnet", num_classes=classes, input_size=67, channels=(8, 8, 8, 8, 8), fc_width=16)
        names = list(CLASSES) if classes == 3 else [f"c{i}" for i in range(classes)]
        save_model(model, self.root / name, class_names=names, mean=torch.from_numpy(np.load(self.data / "mean.npy")))
        return self.root / name

    def train_args(self, data: Path | None = None) -> list:
        """2 epochs of 6 steps (24 images, batch 4), a loader worker, dropout on, a checkpoint every step."""
        return ["--data", data or self.data, "--arch", "tiny-test", "--preset", "full", "--epochs", 2,
                "--batch-size", 4, "--workers", 1, "--device", "cpu", "--seed", 3, "--checkpoint-minutes", 0]

    def data_copy(self, name: str) -> Path:
        return Path(shutil.copytree(self.data, self.fresh(name) / "data"))

    def run_copy(self, name: str) -> Path:
        return Path(shutil.copytree(self.whole_run, self.fresh(name) / "run"))


CASES: list = []


def case(group: str, name: str, expected: str):
    def register(function):
        CASES.append((group, name, expected, function))
        return function
    return register


def show(argv: list, entry: str = "alexnet") -> str:
    """The command as a reader would type it, with the temporary folder's paths shortened."""
    words = ["alexnet" if entry == "alexnet" else "tinynet", *map(str, argv)]
    return " ".join(Path(w).name if w.startswith("/") else w for w in words)


# ---------------------------------------------------------------- prepare


def prepare_refused(w: World, source, out, *extra, needles=(), markers=()):
    argv = ["prepare", source, out, "--size", SIZE, "--workers", 1, *extra]
    return (show(argv), *refused(run(argv), "prepare", *needles, markers=markers))


@case("prepare", "SOURCE does not exist", "refused")
def _(w):
    d = w.fresh("nosource")
    return prepare_refused(w, d / "nowhere", d / "out", needles=("nowhere",))


@case("prepare", "SOURCE is a file", "refused")
def _(w):
    d = w.fresh("sourcefile")
    return prepare_refused(w, write(d / "notes.txt", b"hello\n"), d / "out", needles=("notes.txt",))


@case("prepare", "SOURCE is an empty folder", "refused")
def _(w):
    d = w.fresh("empty")
    (d / "src").mkdir()
    return prepare_refused(w, d / "src", d / "out", needles=("src",))


@case("prepare", "train/ with classes but no images", "refused")
def _(w):
    d = w.fresh("noimages")
    for c in CLASSES:
        (d / "src" / "train" / c).mkdir(parents=True)
    return prepare_refused(w, d / "src", d / "out")


def prepare_handled(w: World, name: str, damage) -> tuple[str, str, bool]:
    """Prepare a 2-per-class image folder that ``damage(train_folder)`` added bad files to: exit 0,
    the 6 real training images prepared, and the bad files listed as skipped with their reasons."""
    d = w.fresh(name)
    src = image_folder(d / "src", train=2, val=1)
    bad = damage(src / "train")
    argv = ["prepare", src, d / "out", "--size", SIZE, "--workers", 1]
    got, held = exited(run(argv, timeout=60))
    if held:
        samples = json.loads((d / "out" / "meta.json").read_text())["splits"]["train"]["samples"]
        listed = skipped(d / "out")
        held = samples == 6 and set(listed) == set(bad)
        got += f", {samples} of 6 images, skipped: " + ("; ".join(f"{k}: {v}" for k, v in listed.items()) or "none")
    return show(argv), got, held


def broken_images(train: Path) -> list[str]:
    good = (train / "ant" / "ant_0.jpg").read_bytes()
    write(train / "ant" / "empty.jpg", b"")
    write(train / "bee" / "cut.jpg", good[:len(good) // 2])
    write(train / "cat" / "words.jpg", b"this is not an image\n" * 20)
    return ["empty.jpg", "cut.jpg", "words.jpg"]


def fifo(train: Path) -> list[str]:
    os.mkfifo(train / "ant" / "x.JPEG")
    return ["x.JPEG"]


def link_loops(train: Path) -> list[str]:
    os.symlink("..", train / "ant" / "loop")
    os.symlink(train / "bee", train / "bee" / "self")
    return ["loop", "self"]  # listed: a link to a folder read already


def pixel_bomb(train: Path) -> list[str]:
    write(train / "ant" / "bomb.png", png_claiming(9000, 9000))  # 162 MB decoded, 68 bytes stored
    return ["bomb.png"]


for _name, _damage, _title in (
        ("broken", broken_images, "broken images (empty, truncated, text) are skipped and listed"),
        ("fifo", fifo, "a FIFO named x.JPEG is skipped, not waited on"),
        ("loop", link_loops, "symlink loops give exactly the real images"),
        ("bomb", pixel_bomb, "16-bit PNG whose header claims 9000x9000 is skipped undecoded")):
    @case("prepare", _title, "handled")
    def _(w, name=_name, damage=_damage):
        return prepare_handled(w, name, damage)


@case("prepare", "broken image with --strict stops naming it", "refused")
def _(w):
    d = w.fresh("strict")
    src = image_folder(d / "src", train=2, val=1)
    write(src / "train" / "bee" / "cut.jpg", (src / "train" / "ant" / "ant_0.jpg").read_bytes()[:300])
    return prepare_refused(w, src, d / "out", "--strict", needles=("cut.jpg",))


@case("prepare", "OUT inside SOURCE", "refused")
def _(w):
    d = w.fresh("inside")
    src = image_folder(d / "src", train=2, val=1)
    before = sorted(src.rglob("*"))
    cmd, got, held = prepare_refused(w, src, src / "train" / "out", needles=("inside SOURCE",))
    return cmd, got, held and sorted(src.rglob("*")) == before


@case("prepare", "OUT is a file", "refused")
def _(w):
    d = w.fresh("outfile")
    out = write(d / "out", b"mine\n")
    cmd, got, held = prepare_refused(w, w.src, out, needles=(str(out),))
    return cmd, got, held and out.read_bytes() == b"mine\n"


for _size in ("100000", "0", "-1"):
    @case("prepare", f"--size {_size}", "refused")
    def _(w, size=_size):
        d = w.fresh("size")
        argv = ["prepare", w.src, d / "out", "--size", size]
        got, held = refused(run(argv), "prepare", f"--size {size}")
        return show(argv), got, held and not (d / "out").exists()


@case("prepare", "CIFAR-10 batch whose pickle runs os.system", "refused")
def _(w):
    from tests import kit

    d = w.fresh("cifar")
    marker = d / "CODE-RAN"
    folder = d / "cifar-10-batches-py"
    write(folder / "batches.meta", pickle.dumps({b"label_names": [n.encode() for n in kit.CIFAR_NAMES]}))
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        pixels = kit.cifar_pixels(b, 2)
        write(folder / name, pickle.dumps({b"data": pixels.transpose(0, 3, 1, 2).reshape(2, -1),
                                           b"labels": [b % 10, (b + 1) % 10]}))
    write(folder / "data_batch_1", pickle.dumps({b"data": RunsCode(marker), b"labels": [0]}))
    return prepare_refused(w, folder, d / "out", needles=("data_batch_1", "refused"), markers=(marker,))


@case("prepare", "tar.gz whose members climb out with ..", "refused")
def _(w):
    d = w.fresh("climb")
    archive = d / "a" / "evil.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("train/ant/a.jpg", jpeg(1, 0)), ("train/bee/b.jpg", jpeg(2, 1)),
                           ("../../escaped.jpg", jpeg(3, 2)), ("train/../../../escaped2.jpg", jpeg(4, 2))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cmd, got, held = prepare_refused(w, archive, d / "out", needles=("evil.tar.gz",))
    escaped = [p for p in w.root.rglob("escaped*.jpg")] + [p for p in d.parent.parent.glob("escaped*")]
    if escaped:
        got += f" [WRITTEN OUTSIDE: {escaped}]"
    return cmd, got, held and not escaped


@case("prepare", "truncated tar.gz", "refused")
def _(w):
    d = w.fresh("cuttar")
    archive = d / "folder.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(w.src, arcname="folder")
    archive.write_bytes(archive.read_bytes()[:archive.stat().st_size // 2])
    return prepare_refused(w, archive, d / "out", needles=("folder.tar.gz",))


@case("prepare", ".tar.gz with train/ at its top", "handled")
def _(w):
    d = w.fresh("trainonly")
    src = image_folder(d / "folder", train=20, val=0, splits=("train",))
    archive = d / "train-only.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "train", arcname="train")
    return held_out(archive, d / "out")


def held_out(source: Path, out: Path) -> tuple[str, str, bool]:
    """Prepare 20 training images of each class alone: 1 in 20 held out for val, and said."""
    argv = ["prepare", source, out, "--size", 16, "--workers", 1]
    r = run(argv)
    got, held = exited(r)
    if held:
        splits = json.loads((out / "meta.json").read_text())["splits"]
        held = splits["train"]["samples"] == 57 and splits["val"]["samples"] == 3 and "held out" in r.out
        got += f", {splits['train']['samples']} train + {splits['val']['samples']} held out for val, said"
    return show(argv), got, held


@case("prepare", "SIGKILL part-way, same command again = uninterrupted", "survived")
def _(w):
    d = w.fresh("killprep")
    src = image_folder(d / "src", train=40, val=4)
    argv = lambda out: ["prepare", src, out, "--size", SIZE, "--workers", 1, "--shard-size", 2]  # noqa: E731
    whole = run(argv(d / "whole"))
    if whole.rc != 0:
        return show(argv(d / "out")), f"uninterrupted prepare failed: {last_line(whole.err)}", False
    out = d / "out"
    proc = subprocess.Popen([sys.executable, "-m", "alexnet", *map(str, argv(out))], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and len(list((out / "train").glob("shard-*.tar"))) < 3:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    shards = len(list((out / "train").glob("shard-*.tar")))
    if proc.returncode != -signal.SIGKILL or (out / "meta.json").exists():
        return show(argv(out)), f"the kill came too late (exit {proc.returncode})", False
    again = run(argv(out))
    got, held = exited(again)
    if held:
        held = tree(out) == tree(d / "whole")
        got += f" after a kill at {shards} of 60 shards; " + ("all files identical" if held else "FILES DIFFER")
    return "kill -9 " + show(argv(out)) + "; rerun", got, held


@case("prepare", "a worker killed part-way ends the run with one line; the rerun = uninterrupted", "survived")
def _(w):
    d = w.fresh("workerdies")
    src = image_folder(d / "src", train=8, val=1)
    write(src / "train" / "cat" / "die.jpg", jpeg(9, 2))
    # Every Python started with this on its path kills itself as it opens die.jpg: only a worker does.
    write(d / "hook" / "sitecustomize.py", b"import os, signal, sys\n"
          b"sys.addaudithook(lambda event, args: event == 'open' and str(args[0]).endswith('die.jpg')"
          b" and os.kill(os.getpid(), signal.SIGKILL))\n")
    argv = lambda out: ["prepare", src, out, "--size", SIZE, "--workers", 2, "--shard-size", 4]  # noqa: E731
    got, held = refused(run(argv(d / "out"), env={"PYTHONPATH": f"{d / 'hook'}{os.pathsep}{ROOT}"}), "prepare",
                        "worker process was killed by SIGKILL", "run the same command again")
    if held:
        again, whole = run(argv(d / "out")), run(argv(d / "whole"))
        held = again.rc == whole.rc == 0 and tree(d / "out") == tree(d / "whole")
        got += "; rerun: " + ("all files identical to an uninterrupted run" if held else last_line(again.err))
    return "kill -9 of a worker: " + show(argv(d / "out")) + "; rerun", got, held


@case("prepare", "run from the folder holding the clone (a folder named alexnet there)", "handled")
def _(w):
    d = w.fresh("parent")
    (d / "work").mkdir()
    (d / "work" / "alexnet").symlink_to(ROOT)  # a namespace package `alexnet` for whatever starts there
    launcher = write(d / "bin" / "alexnet", f"import sys\nsys.path.insert(1, {str(ROOT)!r})\n"
                     "from alexnet.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n".encode())
    argv = ["prepare", w.src, d / "out", "--size", SIZE, "--workers", 2]
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}  # as an installed `alexnet` command runs
    try:
        done = subprocess.run([sys.executable, launcher, *map(str, argv)], cwd=d / "work", env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        got, held = exited(Run(done.returncode, done.stdout, done.stderr))
    except subprocess.TimeoutExpired:
        got, held = f"hung (killed after {TIMEOUT} s)", False
    return "cd folder-holding-the-clone; " + show(argv), got, held


@case("prepare", "--workers -2", "refused")
def _(w):
    d = w.fresh("workers")
    return prepare_refused(w, w.src, d / "out", "--workers", -2, needles=("--workers -2",))


@case("prepare", "SOURCE/<class>/<image> alone: a validation split held out", "handled")
def _(w):
    d = w.fresh("classesonly")
    return held_out(image_folder(d / "folder", train=20, val=0, splits=("train",)) / "train", d / "out")


@case("prepare", "dup.jpg, dup.png, x.y.jpg, x_y.jpg in a class: webdataset reads every sample", "handled")
def _(w):
    import webdataset as wds

    d = w.fresh("keys")
    src = image_folder(d / "src", train=1, val=1)
    for name in ("dup.jpg", "dup.png", "x.y.jpg", "x_y.jpg"):
        write(src / "train" / "ant" / name, jpeg(len(name), 0))
    argv = ["prepare", src, d / "out", "--size", 16, "--workers", 1]
    got, held = exited(run(argv))
    if held:
        shards = sorted(str(p) for p in (d / "out" / "train").glob("shard-*.tar"))
        try:
            keys = [sample["__key__"] for sample in wds.WebDataset(shards, shardshuffle=False)]
            held = len(keys) == len(set(keys)) == 7
            got += f", webdataset reads {len(keys)} samples, {len(set(keys))} keys"
        except ValueError as err:
            held, got = False, got + f", webdataset: {err}"
    return show(argv), got, held


def devkit(d: Path, **files: bytes) -> Path:
    """The ILSVRC-2012 files (tests/kit.py's), the devkit's members replaced by ``files`` (truth, meta)."""
    from tests import kit

    src = kit.ilsvrc_tars(d / "src", per_class=1, n_val=2)
    names = {"truth": "data/ILSVRC2012_validation_ground_truth.txt", "meta": "data/meta.mat"}
    members = {**kit.devkit_files(2), **{f"ILSVRC2012_devkit_t12/{names[k]}": v for k, v in files.items()}}
    write(src / "ILSVRC2012_devkit_t12.tar.gz", kit._tar_bytes(members, mode="w:gz"))
    return src


for _title, _files, _needle in (
        ("garbage meta.mat", {"meta": b"garbage" * 40}, "data/meta.mat: not the devkit's meta.mat"),
        ("empty meta.mat", {"meta": b""}, "data/meta.mat: not the devkit's meta.mat"),
        ("a ground-truth label that is no number", {"truth": b"2\nx\n"}, "ILSVRC2012_val_00000002 is 'x'"),
        ("a ground-truth ID meta.mat lacks", {"truth": b"2\n7\n"}, "ILSVRC2012_val_00000002 is '7'"),
        ("a 64 MiB + 1 ground truth (65 kB compressed)", {"truth": bytes(2**26 + 1)}, "too large")):
    @case("prepare", f"ILSVRC devkit .tar.gz with {_title}", "refused")
    def _(w, files=_files, needle=_needle):
        d = w.fresh("devkit")
        return prepare_refused(w, devkit(d, **files), d / "out", needles=("ILSVRC2012_devkit_t12.tar.gz", needle))


@case("prepare", "--verify on an intact dataset", "handled")
def _(w):
    argv = ["prepare", "--verify", w.data]
    r = run(argv)
    got, held = exited(r)
    return show(argv), got + f": {short(r.out, 70)}", held and "whole" in r.out


@case("prepare", "--verify on a shard with one byte flipped", "handled")
def _(w):
    data = w.data_copy("flip")
    shard = data / "val" / "shard-000000.tar"
    flip(shard)
    argv = ["prepare", "--verify", data]
    r = run(argv)
    got, held = exited(r, status=1)
    return show(argv), got + f": {short(r.out, 90)}", held and f"{shard}: damaged" in r.out


def flip(shard: Path) -> None:
    """Flip one bit inside the first sample's bytes."""
    index = np.load(shard.parent / "index.npy")
    _, offset, size = (int(v) for v in index[0])
    data = bytearray(shard.read_bytes())
    data[offset + size // 2] ^= 0x01
    shard.write_bytes(bytes(data))


@case("prepare", "prepare again after train/index.npy was deleted", "refused")
def _(w):
    data = w.data_copy("noindex")
    (data / "train" / "index.npy").unlink()
    argv = ["prepare", w.src, data, "--size", SIZE, "--workers", 1, "--shard-size", 8]
    return (show(argv), *refused(run(argv), "prepare", "index.npy", "--restart"))


@case("prepare", "--restart after train/index.npy was deleted rebuilds it", "handled")
def _(w):
    data = w.data_copy("restart")
    (data / "train" / "index.npy").unlink()
    argv = ["prepare", w.src, data, "--size", SIZE, "--workers", 1, "--shard-size", 8, "--restart"]
    got, held = exited(run(argv))
    if held:
        held = tree(data) == tree(w.data)
        got += ", identical to the original" if held else ", FILES DIFFER"
    return show(argv), got, held


# ---------------------------------------------------------------- train: settings


TRAIN = ["--arch", "alexnet", "--model-option", "input_size=67", "--model-option", "channels=[8,8,8,8,8]",
         "--model-option", "fc_width=16", "--preset", "full", "--workers", 1, "--device", "cpu"]


def train_refused(w: World, *extra, needles=(), markers=(), out: Path | None = None):
    """``alexnet train`` on the suite's data, the shrunk AlexNet; one epoch of batches of 4 unless a
    config file is given (the command line would override what it says)."""
    size = [] if "--config" in extra else ["--epochs", 1, "--batch-size", 4]
    argv = ["train", "--data", w.data, *TRAIN, *size, "--out", out or w.fresh("run") / "run", *extra]
    return (show(argv), *refused(run(argv), "train", *needles, markers=markers))


for _option, _value in (("--lr", "nan"), ("--lr", "-0.01"), ("--momentum", "5"), ("--patience", "-1"),
                        ("--pca-std", "-1"), ("--weight-decay", "-1"), ("--workers", "-1"), ("--limit", "0"),
                        ("--limit", "-1"), ("--val-limit", "0"), ("--epochs", "0"), ("--batch-size", "0"),
                        ("--epochs", "99999999999999999999")):
    @case("train settings", f"{_option} {_value}", "refused")
    def _(w, option=_option, value=_value):
        return train_refused(w, option, value, needles=(option,))


for _setting in ("dropout=abc", "lrn=nope", "nosuch=1"):
    @case("train settings", f"--model-option {_setting}", "refused")
    def _(w, setting=_setting):
        return train_refused(w, "--model-option", setting, needles=("--model-option",))


for _text, _name in (("epochs: 2.5\n", "--epochs"), ('lr: "fast"\n', "--lr"), ("batch_size: [16]\n", "--batch-size"),
                     ("learning_rate: 0.1\n", "learning_rate"), ("lr: 0.1\n  momentum: 0.5\n", "cannot parse")):
    @case("train config files", f"config.yaml: {_text.strip()!r}", "refused")
    def _(w, text=_text, name=_name):
        config = write(w.fresh("config") / "config.yaml", text.encode())
        return train_refused(w, "--config", config, needles=(name,))


@case("train config files", "config.yaml with a !!python/object/apply:os.system tag", "refused")
def _(w):
    d = w.fresh("yamlcode")
    marker = d / "CODE-RAN"
    config = write(d / "config.yaml", f'lr: !!python/object/apply:os.system ["touch {marker}"]\n'.encode())
    return train_refused(w, "--config", config, needles=("config.yaml",), markers=(marker,))


@case("train config files", "a .ini config file", "refused")
def _(w):
    config = write(w.fresh("ini") / "run.ini", b"[train]\nlr = 0.1\n")
    return train_refused(w, "--config", config, needles=("run.ini",))


for _suffix, _text in ((".yaml", "a: {}\n"), (".json", '{{"a": {}}}')):
    @case("train config files", f"config{_suffix} nested 100,000 levels deep", "refused")
    def _(w, suffix=_suffix, text=_text):
        config = write(w.fresh("deep") / f"deep{suffix}", text.format("[" * 100_000 + "]" * 100_000).encode())
        return train_refused(w, "--config", config, needles=(f"{config}: nested",))


@case("train config files", "--config that does not exist", "refused")
def _(w):
    return train_refused(w, "--config", w.root / "nope.yaml", needles=("nope.yaml",))


@case("train outputs", "--out is a file", "refused")
def _(w):
    out = write(w.fresh("outfile") / "file", b"mine\n")
    cmd, got, held = train_refused(w, out=out, needles=(str(out),))
    return cmd, got, held and out.read_bytes() == b"mine\n"


@case("train outputs", "--out under a file", "refused")
def _(w):
    parent = write(w.fresh("underfile") / "file", b"mine\n")
    return train_refused(w, out=parent / "run", needles=(str(parent / "run"),))


@case("train outputs", "--out holds a run already (no --resume)", "refused")
def _(w):
    run_dir = w.run_copy("again")
    argv = ["train", *w.train_args(), "--out", run_dir]
    return (show(argv, "tinynet"), *refused(run(argv, entry="tests.kit"), "train", "--resume"))


@case("train outputs", "--data a folder that is not prepared", "refused")
def _(w):
    d = w.fresh("notprepared")
    argv = ["train", "--data", w.src, *TRAIN, "--out", d / "run"]
    return (show(argv), *refused(run(argv), "train", "src"))


@case("train outputs", "a checkpoint on a full disk (a 1 MiB tmpfs; root only)", "refused")
def _(w):
    disk = w.fresh("fulldisk") / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", disk], capture_output=True).returncode:
        return "mount -t tmpfs -o size=1m", "cannot mount a tmpfs here (needs root)", False
    try:  # the shrunk AlexNet with 512-wide fc6 and fc7: its checkpoints are larger than the disk
        wide = ["fc_width=512" if option == "fc_width=16" else option for option in TRAIN]
        argv = ["train", "--data", w.data, *wide, "--epochs", 1, "--batch-size", 4, "--out", disk / "run"]
        cmd, got, held = (show(argv), *refused(run(argv), "train", "no space left on the device"))
        return cmd, got, held and not list(disk.rglob(".*.tmp"))
    finally:
        subprocess.run(["umount", disk], check=True)


# ---------------------------------------------------------------- one writer per folder


def stopped_writer(w: World, name: str) -> tuple[subprocess.Popen, Path]:
    """``alexnet train`` (tiny-test) that stops itself (SIGSTOP) at its first step, holding its folder."""
    run_dir = w.fresh(name) / "run"
    argv = ["train", *w.train_args(), "--out", run_dir]
    proc = subprocess.Popen([sys.executable, "-m", "tests.kit", *map(str, argv)], cwd=ROOT,
                            env={**ENV, "TINY_SIGNAL": "SIGSTOP@1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline and process_state(proc.pid) != "T":
        time.sleep(0.02)
    return proc, run_dir


def second_writer(w: World, name: str, argv_of, entry: str = "tests.kit") -> tuple[str, str, bool]:
    """A command started while a stopped train holds the folder: refused, naming the folder and the pid."""
    holder, run_dir = stopped_writer(w, name)
    try:
        argv = argv_of(run_dir)
        return (show(argv, "tinynet" if entry == "tests.kit" else "alexnet"),
                *refused(run(argv, entry=entry), argv[0], str(run_dir), f"pid {holder.pid}"))
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


@case("one writer", "a second fresh train into a folder being written", "refused")
def _(w):
    return second_writer(w, "twofresh", lambda d: ["train", *w.train_args(), "--out", d])


@case("one writer", "train --resume of a folder being written", "refused")
def _(w):
    return second_writer(w, "tworesume", lambda d: ["train", "--resume", d])


@case("one writer", "experiment ablations --out a folder being written", "refused")
def _(w):
    return second_writer(w, "experiment", lambda d: ["experiment", "ablations", "--out", d], entry="alexnet")


@case("one writer", "a fresh train after the writer was killed with SIGKILL", "handled")
def _(w):
    holder, run_dir = stopped_writer(w, "afterkill")
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    argv = ["train", *w.train_args(), "--out", run_dir]
    return (show(argv, "tinynet"), *exited(run(argv, entry="tests.kit")))


# ---------------------------------------------------------------- train: two processes (torchrun)


TORCHRUN = ["--standalone", "--nproc_per_node=2", "-m", "tests.kit"]  # after python3 -m torch.distributed.run


@case("train torchrun", "2 processes, SIGTERM mid-epoch 1, --resume = uninterrupted", "survived")
def _(w):
    whole, cut = w.fresh("ddpwhole") / "run", w.fresh("ddpcut") / "run"
    argv = [*TORCHRUN, "train", *w.train_args()]
    # torchrun reports processes that stopped on SIGTERM (exit 143) as failed, with its own traceback
    for target, env, done in ((whole, {}, "done."), (cut, {"TINY_SIGNAL": "SIGTERM@2"}, "stopped by SIGTERM")):
        r = run([*argv, "--out", target], entry="torch.distributed.run", env=env)
        if done not in r.err:
            return "torchrun -m alexnet train ...", f"exit {r.rc}: {last_line(r.err)}", False
    where = saved_at(cut)  # batches of 4: 2 per process
    r = run([*TORCHRUN, "train", "--resume", cut], entry="torch.distributed.run")
    if r.rc != 0:
        return "torchrun -m alexnet train --resume", f"exit {r.rc}: {last_line(r.err)}", False
    got, held = same_run(whole, cut)
    return "torchrun -m alexnet train ... (SIGTERM at step 2); --resume", f"saved at {where}; {got}", held


@case("train torchrun", "kill -9 of torchrun's process group: no process outlives it", "handled")
def _(w):
    run_dir = w.fresh("ddpkill") / "run"
    argv = [*TORCHRUN, "train", *w.train_args(), "--out", run_dir]
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *map(str, argv)], cwd=ROOT,
                            env={**ENV, "TINY_SIGNAL": "SIGSTOP@2"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + TIMEOUT
    while len(stopped := [p for p in descendants(proc.pid) if process_state(p) == "T"]) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            return "torchrun -m alexnet train ...", "the processes never reached their second step", False
        time.sleep(0.05)
    below = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    while (alive := [p for p in below if process_state(p) not in ("", "Z")]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in alive:  # what the fault left running
        os.kill(pid, signal.SIGKILL)
    got = f"{len(alive)} of {len(below)} processes outlived it" if alive else f"all {len(below)} processes ended"
    return "kill -KILL -PGID (torchrun -m alexnet train ...)", got, not alive


# ---------------------------------------------------------------- train: damaged files


def resume_refused(w: World, run_dir: Path, *needles, markers=()):
    argv = ["train", "--resume", run_dir, "--epochs", 3]
    return (show(argv, "tinynet"), *refused(run(argv, entry="tests.kit"), "train", *needles, markers=markers))


@case("train damaged files", "--resume with an empty last.pt", "refused")
def _(w):
    run_dir = w.run_copy("emptylast")
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(b"")
    return resume_refused(w, run_dir, str(last))


@case("train damaged files", "--resume with a truncated last.pt", "refused")
def _(w):
    run_dir = w.run_copy("cutlast")
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    return resume_refused(w, run_dir, str(last))


@case("train damaged files", "--resume with a last.pt whose pickle runs os.system", "refused")
def _(w):
    run_dir = w.run_copy("evillast")
    marker = run_dir.parent / "CODE-RAN"
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(pickle.dumps({"model": RunsCode(marker), "epoch": 0}))
    return resume_refused(w, run_dir, str(last), markers=(marker,))


@case("train damaged files", "a truncated shard ends the run naming it", "refused")
def _(w):
    data = w.data_copy("cutshard")
    shard = data / "train" / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    argv = ["train", *w.train_args(data), "--out", data.parent / "run"]
    return (show(argv, "tinynet"), *refused(run(argv, entry="tests.kit"), "train", str(shard)))


@case("train damaged files", "a shard with one byte flipped ends the run naming it", "refused")
def _(w):
    data = w.data_copy("flipshard")
    shard = data / "train" / "shard-000000.tar"
    flip(shard)
    argv = ["train", *w.train_args(data), "--out", data.parent / "run"]
    return (show(argv, "tinynet"), *refused(run(argv, entry="tests.kit"), "train", str(shard)))


@case("train damaged files", "the prepared data lacks mean.npy", "refused")
def _(w):
    data = w.data_copy("nomean")
    (data / "mean.npy").unlink()
    argv = ["train", *w.train_args(data), "--out", data.parent / "run"]
    return (show(argv, "tinynet"), *refused(run(argv, entry="tests.kit"), "train", "mean.npy"))


# ---------------------------------------------------------------- train: killed and resumed


def interrupted(w: World, name: str, signals: list[str]) -> tuple[str, str, bool]:
    """Run, stopped by each of ``signals`` (tests/kit.py's TINY_SIGNAL) in turn and resumed, then to the end."""
    if w.whole.rc != 0:
        return "", f"the uninterrupted run failed: {last_line(w.whole.err)}", False
    run_dir = w.fresh(name) / "run"
    steps = []
    for i, at in enumerate([*signals, ""]):
        argv = ["train", "--resume", run_dir] if i else ["train", *w.train_args(), "--out", run_dir]
        r = run(argv, entry="tests.kit", env={"TINY_SIGNAL": at})
        name, _, _ = at.partition("@")
        expected = {"SIGKILL": -signal.SIGKILL, "SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT,
                    "": 0}[name]
        if r.rc != expected or "Traceback" in r.err:
            return show(argv, "tinynet"), f"step {i + 1} ({at or 'to the end'}): exit {r.rc}: {last_line(r.err)}", False
        if name in ("SIGTERM", "SIGINT") and f"alexnet train --resume {run_dir}" not in r.err:
            return show(argv, "tinynet"), f"{name}: no resume command in: {last_line(r.err)}", False
        if i and "resuming from epoch" not in r.err:
            return show(argv, "tinynet"), f"the resumed run does not say where it resumes: {last_line(r.err)}", False
        steps.append(f"{name.lower()}: exit {r.rc}, saved at {saved_at(run_dir)}" if name else "resumed to the end")
    got, held = same_run(w.whole_run, run_dir)
    what = " + ".join(f"{s.partition('@')[0]} at step {s.partition('@')[2]}" for s in signals)
    return f"tinynet train ... ({what}); train --resume", f"{', '.join(steps)}; {got}", held


@case("train killed", "control: the uninterrupted run every resumed run is compared with", "handled")
def _(w):
    got, held = exited(w.whole)
    return show(["train", *w.train_args(), "--out", w.whole_run], "tinynet"), got, held


@case("train killed", "control: a run with another seed is told apart by the comparison", "handled")
def _(w):
    run_dir = w.fresh("seed") / "run"
    argv = ["train", *w.train_args()[:-4], "--seed", 4, "--checkpoint-minutes", 0, "--out", run_dir]
    got, held = exited(run(argv, entry="tests.kit"))
    if held:
        said, same = same_run(w.whole_run, run_dir)
        got, held = f"{got}; {said}", not same
    return show(argv, "tinynet"), got, held


@case("train killed", "kill -9 mid-epoch 1, --resume", "survived")
def _(w):
    return interrupted(w, "kill", ["SIGKILL@4"])


@case("train killed", "SIGTERM mid-epoch 2, --resume", "survived")
def _(w):
    return interrupted(w, "term", ["SIGTERM@9"])


@case("train killed", "kill -9, then SIGTERM of the resumed run, --resume", "survived")
def _(w):
    return interrupted(w, "killterm", ["SIGKILL@2", "SIGTERM@6"])


@case("train killed", "kill -9 at the last step, --resume", "survived")
def _(w):
    return interrupted(w, "killlast", ["SIGKILL@12"])


@case("train killed", "Ctrl-C (SIGINT) mid-epoch 2, --resume", "survived")
def _(w):
    return interrupted(w, "int", ["SIGINT@8"])


def saved_at(run_dir: Path) -> str:
    """Where last.pt says the run stopped: ``epoch E step S`` (1-based, batches of 4)."""
    import torch

    ck = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return f"epoch {ck['epoch'] + 1} step {ck['position'] // 4}"


def group_killed(w: World, name: str, sig: signal.Signals) -> tuple[str, str, bool]:
    """``sig`` to the whole process group (trainer and loader worker), as a scheduler sends it, once
    a checkpoint exists; then --resume. Wherever the signal lands, the resumed run must end as the
    uninterrupted one: checkpoints are taken between steps."""
    if w.whole.rc != 0:
        return "", f"the uninterrupted run failed: {last_line(w.whole.err)}", False
    run_dir = w.fresh(name) / "run"
    argv = ["train", *w.train_args(), "--out", run_dir]
    proc = subprocess.Popen([sys.executable, "-m", "tests.kit", *map(str, argv)], cwd=ROOT,
                            env={**ENV, "TINY_SLEEP": "0.05"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not (run_dir / "checkpoints" / "last.pt").exists():
        time.sleep(0.01)
    os.killpg(proc.pid, sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return show(argv, "tinynet"), f"hung after {sig.name} to the group", False
    expected = -signal.SIGKILL if sig == signal.SIGKILL else 128 + sig
    if proc.returncode != expected or "Traceback" in err:
        return show(argv, "tinynet"), f"{sig.name} to the group: exit {proc.returncode}: {last_line(err)}", False
    where = saved_at(run_dir)
    r = run(["train", "--resume", run_dir], entry="tests.kit")
    if r.rc != 0 or "resuming from epoch" not in r.err:
        return show(argv, "tinynet"), f"--resume: exit {r.rc}: {last_line(r.err)}", False
    got, held = same_run(w.whole_run, run_dir)
    return (f"kill -{sig.name[3:]} -PGID (tinynet train ...); train --resume",
            f"exit {proc.returncode}, saved at {where}; resumed: exit 0; {got}", held)


@case("train killed", "SIGTERM to the whole process group (as SLURM), --resume", "survived")
def _(w):
    return group_killed(w, "groupterm", signal.SIGTERM)


@case("train killed", "kill -9 of the whole process group, --resume", "survived")
def _(w):
    return group_killed(w, "groupkill", signal.SIGKILL)


# ---------------------------------------------------------------- predict, evaluate, figures


@case("predict / evaluate", "control: predict a good image with a good model", "handled")
def _(w):
    argv = ["predict", w.model3, w.image, "--device", "cpu", "--json"]
    return (show(argv), *exited(run(argv)))


@case("predict / evaluate", "control: evaluate a good model on the data", "handled")
def _(w):
    argv = ["evaluate", w.model3, "--data", w.data, "--device", "cpu", "--workers", 1, "--crops", "center"]
    return (show(argv), *exited(run(argv)))


@case("predict / evaluate", "predict README.md img.jpg (not a model file)", "refused")
def _(w):
    argv = ["predict", ROOT / "README.md", w.image, "--device", "cpu"]
    return (show(argv), *refused(run(argv), "predict", "README.md"))


@case("predict / evaluate", "predict a text file named .jpg", "refused")
def _(w):
    notes = write(w.fresh("notes") / "notes.jpg", b"just words, no pixels\n")
    argv = ["predict", w.model3, notes, "--device", "cpu"]
    return (show(argv), *refused(run(argv), "predict", "notes.jpg"))


@case("predict / evaluate", "predict an image that does not exist", "refused")
def _(w):
    argv = ["predict", w.model3, w.root / "nowhere.jpg", "--device", "cpu"]
    return (show(argv), *refused(run(argv), "predict", "nowhere.jpg"))


@case("predict / evaluate", "evaluate a 10-class model on 3-class data", "refused")
def _(w):
    argv = ["evaluate", w.model10, "--data", w.data, "--device", "cpu", "--workers", 1, "--crops", "center"]
    return (show(argv), *refused(run(argv), "evaluate", "model10.pt"))


@case("predict / evaluate", "evaluate on data whose val/index.npy is missing", "refused")
def _(w):
    data = w.data_copy("evalnoindex")
    (data / "val" / "index.npy").unlink()
    argv = ["evaluate", w.model3, "--data", data, "--device", "cpu", "--workers", 1, "--crops", "center"]
    return (show(argv), *refused(run(argv), "evaluate", str(data / "val" / "index.npy")))


@case("predict / evaluate", "evaluate on a shard with one byte flipped", "refused")
def _(w):
    data = w.data_copy("evalflip")
    flip(data / "val" / "shard-000000.tar")
    argv = ["evaluate", w.model3, "--data", data, "--device", "cpu", "--workers", 1, "--crops", "center"]
    return (show(argv), *refused(run(argv), "evaluate", "shard-000000.tar", "--verify"))


@case("predict / evaluate", "figures of a 10-class model on 3-class data", "refused")
def _(w):
    out = w.fresh("figures") / "out"
    argv = ["figures", w.model10, "--data", w.data, "--out", out, "--device", "cpu", "--workers", 1]
    cmd, got, held = (show(argv), *refused(run(argv), "figures", "10 classes"))
    return cmd, got, held and not out.exists()


@case("predict / evaluate", "predict a 16-bit PNG whose header claims 13000x13000 pixels", "refused")
def _(w):
    bomb = write(w.fresh("predictbomb") / "bomb.png", png_claiming(13000, 13000))  # 338 MB decoded, 68 bytes stored
    argv = ["predict", w.model3, bomb, "--device", "cpu"]
    return (show(argv), *refused(run(argv), "predict", "bomb.png", "13000x13000 pixels above the pixel budget"))


@case("predict / evaluate", "evaluate --workers -1", "refused")
def _(w):
    argv = ["evaluate", w.model3, "--data", w.data, "--device", "cpu", "--workers", -1]
    return (show(argv), *refused(run(argv), "evaluate", "--workers", "-1"))


def lying_model(w: World, name: str, options: dict | None = None, **record) -> Path:
    """model10.pt with its record's ``options`` updated and ``record``'s keys replaced: weights unchanged."""
    import torch

    saved = torch.load(w.model10, weights_only=True)
    saved["options"].update(options or {})
    path = w.fresh("liar") / f"{name}.pt"
    torch.save(saved | record, path)
    return path


for _name, _lie, _said in (
        ("fc_width", {"options": {"fc_width": 10**9}}, "option fc_width=1000000000: expected an integer"),
        ("input_size", {"options": {"input_size": 20000}}, "option input_size=20000: expected an integer"),
        ("names", {"class_names": ["cat", "dog"]}, "class_names must be 10 names")):
    for _command in ("predict", "evaluate"):
        @case("model files that lie", f"{_command} a model file saying {_lie}", "refused")
        def _(w, name=_name, lie=_lie, said=_said, command=_command):
            liar = lying_model(w, name, **lie)
            extra = [w.image] if command == "predict" else ["--data", w.data, "--workers", 1, "--crops", "center"]
            argv = [command, liar, *extra, "--device", "cpu"]
            r = run(argv)
            got, held = refused(r, command, f"{liar}: ", said)
            return show(argv), got, held and "--model-option" not in r.err  # refused before building: no traceback


@case("model files that lie", "predict with class names holding terminal escape sequences", "handled")
def _(w):
    import torch

    saved = torch.load(w.model3, weights_only=True)
    liar = w.fresh("escapes") / "escapes.pt"
    torch.save(saved | {"class_names": ["\x1b[2J\x1b[31mred", "plain", "tab\there"]}, liar)
    argv = ["predict", liar, w.image, "--device", "cpu"]
    r = run(argv)
    got, held = exited(r)
    held = held and "\x1b" not in r.out + r.err and "\\x1b[2J\\x1b[31mred" in r.out
    return show(argv), got + f": {short(r.out, 80)!r}" + ("" if held else " [ESCAPES RAW OR MISSING]"), held


# ---------------------------------------------------------------- report


def report_argv(folder: Path, out: Path) -> list:
    return ["report", folder, "--out", out, "--title", "the report"]


@case("report", "experiment and run files whose text fields hold <img src=x onerror=...>", "handled")
def _(w):
    from tests.test_report import PAYLOAD, Markup, hostile_folder

    d = w.fresh("reporttext")
    pages = {}
    for name, text in (("hostile", PAYLOAD), ("plain", "plain")):
        argv = report_argv(hostile_folder(d / name, text), d / f"{name}.html")
        got, held = exited(run(argv))
        if not held:
            return show(argv), got, False
        pages[name] = Markup((d / f"{name}.html").read_text())
    extra = [e for e in pages["hostile"].elements if e not in pages["plain"].elements]
    shown = "".join(pages["hostile"].text).count(PAYLOAD)
    return ("alexnet report FOLDER --out page.html --title 'the report'", f"exit 0; the payload shown as text {shown} times; "
            f"elements or attributes from a file: {extra or 'none'}", not extra and shown >= 20)


for _file, _field in (("relu-vs-tanh.json", "images"), ("lrn.json", "train_images"), ("retrieval.json", "queries")):
    @case("report", f"{_file}'s {_field} holding <img src=x onerror=...>", "refused")
    def _(w, file=_file, field=_field):
        from tests.test_report import PAYLOAD, Markup, break_file, hostile_folder

        d = w.fresh("reportnumber")
        folder = hostile_folder(d / "run", "plain")
        break_file(folder, file, lambda data: data.update({field: PAYLOAD}))
        argv = report_argv(folder, d / "page.html")
        got, held = refused(run(argv), "report", f"{file}: {field} is text, not a whole number")
        if (d / "page.html").exists():  # written anyway: then it must hold no markup from the file
            held = held and "img" not in {tag for tag, _ in Markup((d / "page.html").read_text()).elements}
            got += " [A PAGE WAS WRITTEN]"
        return show(argv), got, held


for _file, _change, _said in (
        ("relu-vs-tanh.json", lambda d: d["runs"].pop("tanh"), "relu-vs-tanh.json: no field runs.tanh"),
        ("ablations.json", lambda d: d["rows"][0].update(top1_error="40%"),
         "ablations.json: rows[0].top1_error is text, not a number"),
        ("metrics.jsonl", None, "metrics.jsonl, epoch 2: val_top1_error is text, not a number")):
    @case("report", f"a malformed {_file}: {_said.partition(': ')[2]}", "refused")
    def _(w, file=_file, change=_change, said=_said):
        from tests.test_report import break_file, hostile_folder

        d = w.fresh("reportmalformed")
        folder = hostile_folder(d / "run", "plain")
        if change:
            break_file(folder, file, change)
        else:
            write(folder / file, b'{"epoch": 1, "val_top1_error": 50.0}\n{"epoch": 2, "val_top1_error": "40%"}\n')
        argv = report_argv(folder, d / "page.html")
        got, held = refused(run(argv), "report", said)
        return show(argv), got, held and not (d / "page.html").exists()


# ---------------------------------------------------------------- convert onnx


def bvlc_onnx(path: Path, damage=None) -> Path:
    """tests/test_convert_onnx.py's bvlc_alexnet graph at reduced width, ``damage(graph)`` done to it."""
    from tests.test_convert_onnx import bvlc_graph, bvlc_weights, save

    graph = bvlc_graph(bvlc_weights())
    if damage:
        damage(graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(graph, path)


def initializer(graph, name: str):
    return next(t for t in graph.graph.initializer if t.name == name)


@case("convert onnx", "an initializer that declares more elements than it holds", "refused")
def _(w):
    d = w.fresh("onnxlies")
    path = bvlc_onnx(d / "lies.onnx", lambda graph: initializer(graph, "fc7_w_0").dims.__setitem__(0, 64))
    argv = ["convert", "onnx", path, d / "x.pt"]
    got, held = refused(run(argv), "convert", "lies.onnx: fc7_w_0 declares shape [64, 32]", "but holds 4,096")
    return show(argv), got, held and not (d / "x.pt").exists()


def external_constant(graph) -> None:
    """The Reshape's shape as a Constant node whose tensor lies in shape.bin (ONNX external data)."""
    import onnx
    from onnx import helper

    shape = initializer(graph, "OC2_DUMMY_1")
    graph.graph.initializer.remove(shape)
    value = onnx.TensorProto(data_type=onnx.TensorProto.INT64, dims=shape.dims,
                             data_location=onnx.TensorProto.EXTERNAL)
    value.external_data.add(key="location", value="shape.bin")
    graph.graph.node.insert(0, helper.make_node("Constant", [], ["OC2_DUMMY_1"], value=value, name="shape"))


@case("convert onnx", "a Constant with external data, its file in the current folder: refused unread", "refused")
def _(w):
    d = w.fresh("onnxexternal")
    path = bvlc_onnx(d / "outside.onnx", external_constant)
    shape = write(d / "shape.bin", np.array([1, -1], np.int64).tobytes())  # what loading would follow
    # Its access time set before its modification time: a read moves it (relatime; onnx reads
    # external data in C++, where an audit hook would not see it).
    os.utime(shape, (1e9, shape.stat().st_mtime))
    argv = ["convert", "onnx", path, d / "x.pt"]
    got, held = refused(run(argv, cwd=d), "convert", "node shape (Constant) is stored outside the file")
    read = shape.stat().st_atime != 1e9
    shape.read_bytes()  # the control: this read must move it, or access times tell nothing here
    if shape.stat().st_atime == 1e9:
        return show(argv), got + " [cannot tell: this file system keeps no access times]", False
    got += " [shape.bin WAS READ]" if read else "; shape.bin unread (its access time unchanged)"
    held = held and not read
    return "cd FOLDER-WITH-shape.bin; " + show(argv), got, held and not (d / "x.pt").exists()


@case("convert onnx", "SIGKILL while writing the model file; the next convert removes the temporary", "survived")
def _(w):
    from tests.test_convert_onnx import KILLED_WHILE_WRITING

    d = w.fresh("onnxkill")
    path, out = bvlc_onnx(d / "k.onnx"), d / "k.pt"
    argv = ["convert", "onnx", path, out]
    try:
        killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, *map(str, argv)], cwd=ROOT, env=ENV,
                                capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return show(argv), f"hung (killed after {TIMEOUT} s)", False
    left = [p.name for p in d.glob(".k.pt.*.tmp")]
    if killed.returncode != -signal.SIGKILL or len(left) != 1 or out.exists():
        return show(argv), f"the kill: exit {killed.returncode}, temporaries {left}, k.pt {out.exists()}", False
    got, held = exited(run(argv))
    after = [p.name for p in d.glob(".*.tmp")]
    held = held and not after and out.is_file()
    return ("kill -9 while writing: " + show(argv) + "; again", f"killed leaving {left[0]}; again: {got}, "
            f"temporaries left: {after or 'none'}, k.pt written", held)


# ---------------------------------------------------------------- experiment run records


EXPERIMENT = ["--epochs", 1, "--lrs", 0.01, "--search-epochs", 1, "--seeds", 0, "--batch-size", 8, "--device", "cpu"]


def relu_vs_tanh(w: World, out: Path, *extra) -> list:
    """``alexnet experiment relu-vs-tanh`` on two classes of 4 noisy 32x32 PNGs (made once)."""
    from tests import kit

    images = w.root / "two-classes"
    if not images.exists():
        kit.image_folder(images, 4, 0, classes=("bright", "dark"), size=(32, 32), noise=30, suffix=".png")
    return ["experiment", "relu-vs-tanh", "--data", images, *EXPERIMENT, "--out", out, *extra]


def damaged_record(w: World, name: str, change) -> tuple[str, str, bool]:
    """A finished experiment whose run record was edited (``change`` to its JSON, the key intact),
    run again: refused naming the record, the record kept as it was."""
    out = w.root / "experiment"
    if not out.exists():
        first = run(relu_vs_tanh(w, out))
        if first.rc != 0:
            shutil.rmtree(out, ignore_errors=True)
            return "", f"the first experiment failed: exit {first.rc}: {last_line(first.err)}", False
    out = Path(shutil.copytree(out, w.fresh(name) / "out"))
    record = out / "runs" / "run-tanh-lr0.01-seed0.json"
    data = json.loads(record.read_text())
    change(data["run"])
    record.write_text(json.dumps(data))
    edited = record.read_bytes()
    argv = relu_vs_tanh(w, out)
    got, held = refused(run(argv), "experiment", f"{record}: not a run record", "delete it to redo that run")
    return show(argv), got, held and record.read_bytes() == edited


@case("experiment records", "a run record whose learning rate is the string \"0.01\"", "refused")
def _(w):
    return damaged_record(w, "recordtext", lambda run_: run_.update(lr="0.01"))


@case("experiment records", "a run record whose list of points was removed", "refused")
def _(w):
    return damaged_record(w, "recordlist", lambda run_: run_.pop("points"))


for _option, _value in (("--lrs", "nan"), ("--batch-size", "0")):
    @case("experiment records", f"relu-vs-tanh {_option} {_value}", "refused")
    def _(w, option=_option, value=_value):
        out = w.fresh("experimentoption") / "out"
        argv = relu_vs_tanh(w, out, option, value)  # given last: the command line's later value wins
        got, held = refused(run(argv), "experiment", option, value)
        return show(argv), got, held and not out.exists()


@case("one writer", "experiment relu-vs-tanh reaching a run another process trains (its flock held)", "refused")
def _(w):
    out = w.fresh("experimentrun") / "out"
    (out / "partial").mkdir(parents=True)
    held = os.open(out / "partial" / "run-tanh-lr0.01-seed0.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # as the process training that run holds it
    try:
        argv = relu_vs_tanh(w, out)
        return (show(argv), *refused(run(argv), "experiment", str(out / "runs" / "run-tanh-lr0.01-seed0"),
                                     f"being written by another process (pid {os.getpid()})"))
    finally:
        os.close(held)


# ---------------------------------------------------------------- the run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="also write every case's record as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    parser.add_argument("--only", metavar="WORD", help="run the cases whose group or name holds WORD")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="alexnet-faults-"))
    started, date = time.monotonic(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: list[Result] = []
    try:
        world = World(root)
        for group, name, expected, function in CASES:
            if args.only and args.only not in f"{group} {name}":
                continue
            t = time.monotonic()
            try:
                command, got, held = function(world)
            except Exception as err:  # noqa: BLE001 (a case that breaks is a failed case, not the end of the suite)
                command, got, held = "", f"the case itself failed: {type(err).__name__}: {err}", False
            results.append(Result(group, name, command, expected, got, bool(held), round(time.monotonic() - t, 1)))
            r = results[-1]
            print(f"{'held' if r.held else 'FAILED':6} {r.seconds:5.1f}s  [{group}] {name}: {short(r.got, 140)}",
                  flush=True)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(results)
    failed = [r for r in results if not r.held]
    total = f"{len(results)} cases: {len(results) - len(failed)} held, {len(failed)} failed"
    print(f"\n{total} ({time.monotonic() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": total, "started": date, "cpus": os.cpu_count(),
                                               "seconds": round(time.monotonic() - started),
                                               "cases": [asdict(r) for r in results]}, indent=1) + "\n")
    return 1 if failed else 0


def print_table(results: list[Result]) -> None:
    print("\n| group | case | command | expected | got | held |\n| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r.group} | {r.case} | `{short(r.command, 80)}` | {r.expected} | {short(r.got, 120)} | "
              f"{'yes' if r.held else 'NO'} |")
    print("\n| group | cases | held | failed |\n| --- | --- | --- | --- |")
    for group in dict.fromkeys(r.group for r in results):
        rows = [r for r in results if r.group == group]
        print(f"| {group} | {len(rows)} | {sum(r.held for r in rows)} | {sum(not r.held for r in rows)} |")


if __name__ == "__main__":
    sys.exit(main())
