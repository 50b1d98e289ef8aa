"""Model files and checkpoints: weights, architecture, options, class names; read without running pickled code."""

import os
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.atomic import atomic_torch_save
from alexnet.classes import num_outputs
from alexnet.model import TwoDeviceAlexNet
from alexnet.registry import build_model, checked_options


def model_record(model: nn.Module, class_names=None) -> dict:
    """What a model file holds of a model: weights (always in the one-device layout) and recipe."""
    state = model.one_device_state_dict() if hasattr(model, "one_device_state_dict") else model.state_dict()
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in model.options.items()}
    return {"format": "alexnet-model", "version": 1, "arch": model.arch, "options": options,
            "class_names": list(class_names) if class_names is not None else None,
            "model": {k: v.detach().cpu() for k, v in state.items()}}


def save_model(model: nn.Module, path: str | os.PathLike, class_names=None, **extra) -> None:
    """Write ``model`` (built by ``build_model``) to ``path`` atomically; ``extra`` keys are kept."""
    atomic_torch_save(model_record(model, class_names) | extra, path)


def looks_like_text(head: bytes) -> bool:
    """Whether a file's first bytes hold no control characters but whitespace."""
    return not any(b < 32 and b not in b"\t\n\r\f" for b in head)


def _not_a_torch_file(path: Path, hint: str) -> str | None:
    """Why ``path`` cannot be a torch file, judged without loading it; None when it may be one."""
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes); was it saved only in part?"
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):  # torch.save's format since PyTorch 1.6: a zip archive
        if not zipfile.is_zipfile(path):
            return ("it is truncated or damaged: a zip archive without its end (central directory); "
                    "was it copied or saved only in part?")
        with zipfile.ZipFile(path) as archive:
            if not any(name.rsplit("/", 1)[-1] == "data.pkl" for name in archive.namelist()):
                return f"it is a zip archive, but not one torch.save wrote (no data.pkl inside); {hint}"
        return None
    if head[:1] == b"\x80":  # a pickle: PyTorch's legacy format, or any pickled object (judged on loading)
        return None
    if looks_like_text(head):
        return f"it is a text file; {hint}"
    return f"it is neither a zip archive (torch.save's format) nor a pickle; {hint}"


def _pickles_code(path: Path) -> bool:
    """Whether the first pickle in ``path`` refers to Python classes or functions (read, never executed)."""
    code = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}  # opcodes that name or call it
    try:
        with open(path, "rb") as f:
            return any(op.name in code for op, _, _ in pickletools.genops(f))
    except Exception:  # noqa: BLE001 - not a well-formed pickle: no code found in it
        return False


def model_file(path: str | os.PathLike) -> Path:
    """``path``, or for a run folder its ``checkpoints/best.pt``, else ``last.pt``."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in ("best.pt", "last.pt"):
        if (path / "checkpoints" / name).is_file():
            return path / "checkpoints" / name
    raise UserError(f"{path}: a folder without checkpoints/best.pt or checkpoints/last.pt; give a run folder "
                    "of alexnet train, or a model file")


def read_model_file(path: str | os.PathLike) -> dict:
    """The dict in a model file, checkpoint or run folder; a UserError names the file and what it is instead."""
    path = model_file(path)
    record = read_torch_file(path, "model file")
    missing = [k for k in ("model", "arch", "options") if not isinstance(record, dict) or k not in record]
    if missing:
        raise UserError(f"{path}: not an alexnet model file or checkpoint (missing {', '.join(missing)})")
    return record


def read_torch_file(path: str | os.PathLike, what: str):
    """What ``torch.save`` wrote in ``path`` (tensors and plain values only), else a UserError saying what it is."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {what}")
    hint = f"a {what} is what torch.save writes"
    if what == "model file":
        hint += ": alexnet train's checkpoints/best.pt or last.pt, or alexnet convert's output"
    reason = _not_a_torch_file(path, hint)
    if reason is None:
        try:
            with warnings.catch_warnings():  # torch's note on a pickle protocol it did not write
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            if "GLOBAL" in str(err) or _pickles_code(path):
                reason = ("it holds pickled Python classes or functions, code that loading would run; "
                          "such files are never unpickled here")
            else:
                reason = f"it is a pickle, but not one torch.save wrote; {hint}"
        except EOFError:
            reason = "it is truncated: the data ends early; was it copied or saved only in part?"
        except Exception as err:  # noqa: BLE001 - anything else a damaged file makes torch.load raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            reason = (f"it is a pickle, but not one torch.save wrote; {hint}"
                      if "magic number" in first else f"it is damaged ({first[:200]})")
    raise UserError(f"{path}: not a readable {what}: {reason}")


def model_from_record(record: dict, path: str | os.PathLike, devices=None) -> nn.Module:
    """The network of a :func:`read_model_file` dict in eval mode, with ``class_names`` and ``mean``; its options,
    weight shapes and class names are checked first (a file that lies allocates nothing; ``path`` names it)."""
    try:
        options = checked_options(record["arch"], record["options"], "option")
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    with torch.device("meta"):  # the shapes the options make, no memory taken
        expected = {k: tuple(v.shape) for k, v in build_model(record["arch"], **options).state_dict().items()}
    weights = record["model"] if isinstance(record["model"], dict) else {}
    found = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if found != expected:
        key = next(k for k in sorted(expected.keys() | found.keys()) if found.get(k) != expected.get(k))
        raise UserError(f"{path}: its weights do not fit its architecture {record['arch']!r} and options: {key} "
                        f"is {found.get(key, 'absent')} in the file, {expected.get(key, 'absent')} for the options")
    model = build_model(record["arch"], **options)
    names, outputs = record.get("class_names"), num_outputs(model)
    if names is not None and not (isinstance(names, list) and len(names) == outputs
                                  and all(isinstance(n, str) for n in names)):
        held = f"{len(names)} names" if isinstance(names, list) else type(names).__name__
        raise UserError(f"{path}: class_names must be {outputs} names, one per output of the network, not {held}")
    try:
        model.load_state_dict(record["model"])
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not fit architecture {record['arch']!r}: {err}") from None
    if devices is not None:
        try:
            model = TwoDeviceAlexNet.from_one_device(model, devices)
        except ValueError as err:
            raise UserError(f"{path}: {err}") from None
    model.arch, model.class_names = record["arch"], names
    model.mean = record.get("mean")  # the training set's mean image, where the file holds it
    return model.eval()
