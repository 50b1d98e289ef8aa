"""Named architectures, torchvision compatibility, model files and `alexnet summary`."""

import json
import pickle
import subprocess
import sys

import pytest
import torch

import alexnet
from alexnet import build_model, list_models, load_model, save_model
from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.summary import summarize

# torchvision.models.alexnet's state_dict, key by key (torchvision/models/alexnet.py).
TORCHVISION_ALEXNET = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}


def test_the_registry_lists_the_three_architectures_and_alexnet_is_the_paper():
    assert list_models()[:3] == ["alexnet", "alexnet-onetower", "alexnet-owt"]
    net = build_model(fc_width=64)  # the paper's size is test_model.py's and the summary's
    assert net.arch == "alexnet" and isinstance(net, alexnet.AlexNet) and net.input_size == 227
    assert net.normalization == "mean_image"


def test_owt_has_torchvisions_keys_and_shapes_and_loads_its_weights_strictly():
    net = build_model("alexnet-owt")
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == TORCHVISION_ALEXNET
    fake = {k: torch.randn(shape) for k, shape in TORCHVISION_ALEXNET.items()}
    net.load_state_dict(fake, strict=True)
    assert net.input_size == 224 and net.normalization == "imagenet"
    assert net.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_unknown_architecture_or_option_is_a_clear_error():
    with pytest.raises(UserError, match="unknown architecture 'vgg'.*alexnet-owt"):
        build_model("vgg")
    with pytest.raises(UserError, match="no option lrn"):
        build_model("alexnet-owt", lrn=False)


def test_a_saved_model_round_trips_with_its_architecture_options_and_classes(tmp_path):
    net = build_model("alexnet", num_classes=5, lrn=False, activation="tanh", drop_layer="conv4", fc_width=64)
    save_model(net, tmp_path / "m.pt", class_names=["a", "b", "c", "d", "e"])
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["arch"] == "alexnet" and raw["options"]["drop_layer"] == "conv4"
    back = load_model(tmp_path / "m.pt")
    assert back.class_names == ["a", "b", "c", "d", "e"] and not back.training
    assert back.options == net.options
    for (k, v), (k2, v2) in zip(net.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    x = torch.randn(1, 3, 227, 227)
    torch.testing.assert_close(back(x), net.eval()(x))


def test_a_two_device_model_is_saved_in_the_one_device_layout(tmp_path):
    two = build_model("alexnet", num_classes=3, fc_width=64, devices=("cpu", "cpu"))
    save_model(two, tmp_path / "two.pt")
    one = load_model(tmp_path / "two.pt")
    x = torch.randn(1, 3, 227, 227)
    torch.testing.assert_close(one(x), two.eval()(x), rtol=1e-5, atol=1e-5)
    again = load_model(tmp_path / "two.pt", devices=("cpu", "cpu"))
    assert isinstance(again, alexnet.TwoDeviceAlexNet) and again.arch == "alexnet"


class Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_loading_never_executes_pickled_code_and_names_the_file(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": Evil(), "arch": "alexnet", "options": {}}, f)
    with pytest.raises(UserError, match="evil.pt: not a readable model file"):
        load_model(path)
    trunc = tmp_path / "trunc.pt"
    save_model(build_model("alexnet", num_classes=2, fc_width=16), trunc)
    trunc.write_bytes(trunc.read_bytes()[:1000])
    with pytest.raises(UserError, match="trunc.pt: not a readable model file"):
        load_model(trunc)
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="missing model, arch, options"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(UserError, match="no such model file"):
        load_model(tmp_path / "absent.pt")


def test_summary_shows_the_papers_maps_neurons_and_parameter_total():
    s = summarize(build_model("alexnet"))
    layers = {r["layer"]: r for r in s["layers"]}
    assert [layers[n]["output"] for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5")] == [
        "55x55x96", "27x27x256", "13x13x384", "13x13x384", "13x13x256", "6x6x256"]
    neurons = [r["neurons"] for r in s["layers"] if r["neurons"]]
    assert neurons == [290_400, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]
    assert "253,440" in layers["conv1"]["note"] and "erratum" in layers["conv1"]["note"]
    assert s["totals"]["parameters"] == 60_965_224
    # multiply-adds of conv2 by hand: 27*27*256 outputs, each over 48 maps of 5x5
    assert layers["conv2"]["multiply_adds"] == 27 * 27 * 256 * 48 * 25


def test_summary_command_prints_json_for_owt_with_torchvisions_parameter_count(capsys):
    assert main(["summary", "--arch", "alexnet-owt", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["parameters"] == 61_100_840


def test_the_command_lists_its_subcommands_and_version(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    from alexnet.cli import COMMANDS

    for command in COMMANDS:
        assert command in out
    assert main(["models"]) == 0
    models = capsys.readouterr().out
    assert "alexnet-onetower" in models and "footnote" in models
    assert main(["summary", "--arch", "nope"]) == 2
    assert "unknown architecture 'nope'" in capsys.readouterr().err


def test_summary_list_is_the_same_as_models(capsys):
    for flags in ([], ["--json"]):
        assert main(["models", *flags]) == 0
        models = capsys.readouterr().out
        assert main(["summary", "--list", *flags]) == 0
        assert capsys.readouterr().out == models


def test_python_dash_m_alexnet_runs_the_command():
    version = subprocess.run([sys.executable, "-m", "alexnet", "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert version.strip() == f"alexnet {alexnet.__version__}"
