"""`alexnet convert torchvision`: torchvision's published AlexNet weights as our model file."""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_registry_and_files import TORCHVISION_ALEXNET  # torchvision's keys and shapes

from alexnet import load_model
from alexnet.cli import main
from alexnet.classes import imagenet_class_names
from alexnet.convert import convert_torchvision
from alexnet.errors import UserError

def torchvision_forward(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's AlexNet.forward in eval mode, written with torch.nn.functional."""
    x = F.max_pool2d(F.relu(F.conv2d(x, w["features.0.weight"], w["features.0.bias"], stride=4, padding=2)), 3, 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, w["features.3.weight"], w["features.3.bias"], padding=2)), 3, 2)
    x = F.relu(F.conv2d(x, w["features.6.weight"], w["features.6.bias"], padding=1))
    x = F.relu(F.conv2d(x, w["features.8.weight"], w["features.8.bias"], padding=1))
    x = F.max_pool2d(F.relu(F.conv2d(x, w["features.10.weight"], w["features.10.bias"], padding=1)), 3, 2)
    x = F.adaptive_avg_pool2d(x, (6, 6)).flatten(1)
    x = F.relu(F.linear(x, w["classifier.1.weight"], w["classifier.1.bias"]))
    x = F.relu(F.linear(x, w["classifier.4.weight"], w["classifier.4.bias"]))
    return F.linear(x, w["classifier.6.weight"], w["classifier.6.bias"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Random weights in torchvision's layout, saved as torchvision publishes them, and converted."""
    folder = tmp_path_factory.mktemp("convert")
    generator = torch.Generator().manual_seed(0)
    weights = {k: torch.randn(shape, generator=generator) * 0.02 for k, shape in TORCHVISION_ALEXNET.items()}
    torch.save(weights, folder / "alexnet-owt.pth")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = main(["convert", "torchvision", str(folder / "alexnet-owt.pth"), str(folder / "alexnet-torchvision.pt")])
    assert status == 0 and "alexnet-torchvision.pt: alexnet-owt, 61,100,840 parameters" in out.getvalue()
    return folder, weights


def test_the_converted_network_computes_torchvisions_function(converted):
    folder, weights = converted
    model = load_model(folder / "alexnet-torchvision.pt")
    assert model.arch == "alexnet-owt" and model.input_size == 224 and model.normalization == "imagenet"
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), torchvision_forward(weights, x).numpy(), rtol=1e-4, atol=1e-5)


def test_the_converted_file_names_the_1000_ilsvrc_classes_in_the_standard_order(converted):
    names = imagenet_class_names()
    model = load_model(converted[0] / "alexnet-torchvision.pt")
    assert model.class_names == names and len(names) == 1000
    assert names[0].startswith("tench") and names[-1].startswith("toilet tissue")


def test_predict_reads_a_converted_model_with_torchvisions_preprocessing(converted, capsys):
    folder, weights = converted
    image = np.random.default_rng(0).integers(0, 256, (300, 256, 3), dtype=np.uint8)  # 256 wide: no resampling
    Image.fromarray(image).save(folder / "photo.png")
    assert main(["predict", str(folder / "alexnet-torchvision.pt"), str(folder / "photo.png"),
                 "--crops", "center", "--json", "--device", "cpu"]) == 0
    found = json.loads(capsys.readouterr().out)[0]["predictions"]

    crop = image[22 + 16 : 22 + 16 + 224, 16 : 16 + 224]  # torchvision: Resize(256), CenterCrop(224)
    x = (torch.from_numpy(crop).permute(2, 0, 1).float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        probs = torch.softmax(torchvision_forward(weights, x[None]), 1)[0]
    top = probs.topk(5)
    assert [p["index"] for p in found] == top.indices.tolist()
    assert [p["probability"] for p in found] == pytest.approx(top.values.tolist(), rel=1e-4)


def test_a_file_that_is_not_torchvisions_alexnet_is_refused_with_what_differs(tmp_path):
    # expanded from one stored number: the right shapes at no cost
    weights = {k: torch.zeros(1).expand(shape) for k, shape in TORCHVISION_ALEXNET.items() if k != "classifier.6.bias"}
    weights["classifier.6.weight"] = torch.zeros(10, 4096)
    weights["fc9.weight"] = torch.zeros(1)
    torch.save(weights, tmp_path / "other.pth")
    with pytest.raises(UserError) as err:
        convert_torchvision(tmp_path / "other.pth", tmp_path / "out.pt")
    message = str(err.value)
    assert "other.pth" in message and "missing classifier.6.bias" in message and "unexpected fc9.weight" in message
    assert "classifier.6.weight: (10, 4096) instead of (1000, 4096)" in message
    assert not (tmp_path / "out.pt").exists()


class Payload:
    """A pickle that would create a file if unpickling ran its code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_reading_the_weights_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"features.0.weight": Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match="evil.pth: not a readable PyTorch weights file: it holds pickled Python classes or functions"):
        convert_torchvision(tmp_path / "evil.pth", tmp_path / "out.pt")
    assert not marker.exists()
    with pytest.raises(UserError, match="nowhere.pth: no such PyTorch weights file"):
        convert_torchvision(tmp_path / "nowhere.pth", tmp_path / "out.pt")


def test_a_file_that_is_not_weights_is_named_with_what_it_is_in_one_line(tmp_path):
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    with pytest.raises(UserError) as caught:
        convert_torchvision(tmp_path / "notes.pth", tmp_path / "out.pt")
    message = str(caught.value)
    assert "notes.pth: not a readable PyTorch weights file: it is a text file" in message
    assert "\n" not in message and "weights_only" not in message  # not torch's own advice to unpickle it
    assert not (tmp_path / "out.pt").exists()


# --- alexnet export: a model file as ONNX ----------------------------------------------------------


def test_export_writes_an_onnx_graph_that_onnxruntime_runs_as_pytorch_does_at_any_batch(tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")
    from alexnet import save_model
    from tests.kit import save_run, tiny_alexnet

    model = tiny_alexnet(3, lrn_k=1.0)  # LRN's window sums matter: k=1 and a wide input scale below
    save_run(tmp_path / "run", model)
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "net.onnx")]) == 0
    out = capsys.readouterr().out
    assert "input 'images' [batch, 3, 67, 67]" in out and "verified against onnxruntime" in out
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 67, 67) * 100
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(session.run(["logits"], {"images": x.numpy()})[0] - expected).max() < 1e-4 * np.abs(expected).max()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx", "run"]  # no temporary left
    save_model(model, tmp_path / "m.pt")
    assert main(["export", str(tmp_path / "m.pt"), str(tmp_path / "net.pth")]) == 2
    assert "net.pth: the ONNX file to write must end in .onnx" in capsys.readouterr().err


def test_export_without_the_onnx_package_says_which_extra_to_install(tmp_path, capsys, monkeypatch):
    from alexnet import save_model
    from tests.kit import tiny_alexnet

    save_model(tiny_alexnet(3), tmp_path / "m.pt")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed: `import onnx` fails
    assert main(["export", str(tmp_path / "m.pt"), str(tmp_path / "net.onnx")]) == 2
    assert "alexnet export needs the onnx package: pip install 'alexnet[convert]'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_an_export_that_onnxruntime_does_not_confirm_writes_nothing(tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    import alexnet.convert_onnx
    from alexnet import save_model
    from tests.kit import tiny_alexnet

    save_model(tiny_alexnet(3), tmp_path / "m.pt")
    monkeypatch.setattr(alexnet.convert_onnx, "TOLERANCE", -1.0)  # no difference passes
    assert main(["export", str(tmp_path / "m.pt"), str(tmp_path / "net.onnx")]) == 2
    err = capsys.readouterr().err
    assert "verification failed: the logits of PyTorch and onnxruntime differ" in err and "nothing written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
