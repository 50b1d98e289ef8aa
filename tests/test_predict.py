"""`alexnet predict`: the paper's preprocessing (section 2) and the five most probable classes."""

from __future__ import annotations


import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.errors import UserError
from alexnet.inference import load_image, predict
from tests.kit import alexnet_command, tiny_alexnet
from alexnet.predict import format_predictions, load_mean

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def striped(size: tuple[int, int], colours, vertical: bool) -> Image.Image:
    """Three equal stripes, side by side (vertical) or stacked."""
    w, h = size
    img = Image.new("RGB", size)
    for i, colour in enumerate(colours):
        box = (i * w // 3, 0, (i + 1) * w // 3, h) if vertical else (0, i * h // 3, w, (i + 1) * h // 3)
        img.paste(colour, box)
    return img


@pytest.mark.parametrize(("size", "vertical"), [((768, 256), True), ((300, 900), False), ((1536, 512), True)])
def test_an_image_becomes_the_central_256_patch_after_its_shorter_side_is_rescaled_to_256(tmp_path, size, vertical):
    path = tmp_path / "stripes.png"
    striped(size, [RED, GREEN, BLUE], vertical).save(path)
    patch = load_image(path)
    assert patch.shape == (256, 256, 3) and patch.dtype == np.uint8
    inner = patch[4:-4, 4:-4].reshape(-1, 3)  # away from the stripes' resampled edges
    assert (inner == GREEN).all()


def test_greyscale_cmyk_and_mislabelled_png_images_are_read_as_rgb(tmp_path):
    Image.new("L", (300, 256), 77).save(tmp_path / "grey.jpg")
    Image.new("CMYK", (256, 256), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("RGB", (256, 256), BLUE).save(tmp_path / "n02105855_2933.JPEG", format="PNG")
    assert (load_image(tmp_path / "grey.jpg") == 77).all()
    assert np.abs(load_image(tmp_path / "cmyk.jpg").astype(int) - RED).max() <= 2
    assert (load_image(tmp_path / "n02105855_2933.JPEG") == BLUE).all()


def test_a_missing_file_and_a_file_that_is_no_image_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="nowhere.jpg: no such image file"):
        load_image(tmp_path / "nowhere.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(UserError, match=r"notes.jpg: not an image \(no known image format\)"):
        load_image(tmp_path / "notes.jpg")


def images_in(tmp_path, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (256 + 40 * i, 256, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_predict_lists_the_most_probable_classes_with_their_ten_crop_softmax_probabilities(tmp_path):
    paths = images_in(tmp_path, 3)
    model = tiny_alexnet(7)
    mean = np.random.default_rng(1).uniform(0, 255, (256, 256, 3)).astype(np.float32)
    results = predict(model, paths, crops="ten", top=5, mean=torch.from_numpy(mean), device="cpu")

    s, last, mid = 67, 256 - 67, (256 - 67) // 2
    centred = np.stack([load_image(p) for p in paths]).astype(np.float32) - mean
    crops = [centred[:, t : t + s, l : l + s] for t, l in [(0, 0), (0, last), (last, 0), (last, last), (mid, mid)]]
    crops += [c[:, :, ::-1] for c in crops]
    with torch.no_grad():
        probs = np.mean([torch.softmax(model(torch.from_numpy(c.transpose(0, 3, 1, 2).copy())), 1).numpy()
                         for c in crops], axis=0)
    assert [r["image"] for r in results] == paths
    for result, p in zip(results, probs):
        ranked = np.argsort(-p)[:5]
        assert [q["index"] for q in result["predictions"]] == ranked.tolist()
        assert [q["class"] for q in result["predictions"]] == [f"c{i}" for i in ranked]
        assert [q["probability"] for q in result["predictions"]] == pytest.approx(p[ranked].tolist(), rel=1e-4)


def test_the_text_output_shows_each_image_then_its_classes_in_percent():
    results = [
        {"image": "cat.jpg", "predictions": [{"class": "tabby", "index": 1, "probability": 0.8125},
                                             {"class": "tiger cat", "index": 0, "probability": 0.0625}]},
        {"image": "dog.jpg", "predictions": [{"class": "beagle", "index": 2, "probability": 1.0}]},
    ]
    assert format_predictions(results).splitlines() == [
        "cat.jpg",
        "  1.  81.25%  tabby",
        "  2.   6.25%  tiger cat",
        "dog.jpg",
        "  1. 100.00%  beagle",
    ]


def test_a_mean_image_model_without_a_mean_asks_for_one(tmp_path):
    with pytest.raises(UserError, match="--mean"):
        predict(tiny_alexnet(3), images_in(tmp_path, 1), device="cpu")


def test_the_mean_image_is_read_from_mean_npy_or_the_prepared_folder(tmp_path):
    mean = np.random.default_rng(0).uniform(0, 255, (256, 256, 3)).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean)
    assert np.array_equal(load_mean(tmp_path).numpy(), mean)
    np.save(tmp_path / "bad.npy", np.zeros((4, 4)))
    with pytest.raises(UserError, match="bad.npy: expected a square HxWx3 mean image"):
        load_mean(tmp_path / "bad.npy")


@pytest.fixture
def checkpoint(tmp_path):
    """A model file as training writes it: weights, class names and the training set's mean image."""
    from alexnet import save_model

    model = tiny_alexnet(7)
    mean = torch.from_numpy(np.random.default_rng(2).uniform(0, 255, (256, 256, 3)).astype(np.float32))
    save_model(model, tmp_path / "model.pt", class_names=[f"class {i}" for i in range(7)], mean=mean)
    return tmp_path / "model.pt", model, mean


def test_the_command_prints_the_top_classes_of_each_image_as_text_or_json(tmp_path, capsys, checkpoint):
    path, model, mean = checkpoint
    images = images_in(tmp_path, 2)
    model.class_names = [f"class {i}" for i in range(7)]
    expected = predict(model, images, crops="center", top=3, mean=mean, device="cpu")

    status, out, _ = alexnet_command(capsys, "predict", str(path), *images, "--crops", "center", "--top", "3", "--json", "--device", "cpu")
    assert status == 0
    found = json.loads(out)
    assert [r["image"] for r in found] == images
    for mine, theirs in zip(found, expected):
        assert [p["class"] for p in mine["predictions"]] == [p["class"] for p in theirs["predictions"]]
        assert [p["probability"] for p in mine["predictions"]] == pytest.approx([p["probability"] for p in theirs["predictions"]])

    status, out, _ = alexnet_command(capsys, "predict", str(path), *images, "--crops", "center", "--top", "3", "--device", "cpu")
    assert status == 0 and out.strip() == format_predictions(found)


def test_the_command_names_a_missing_image_or_model_file(tmp_path, capsys, checkpoint):
    path, _, _ = checkpoint
    status, _, err = alexnet_command(capsys, "predict", str(path), str(tmp_path / "nowhere.jpg"))
    assert status == 2 and "alexnet predict: error:" in err and "nowhere.jpg: no such image file" in err
    status, _, err = alexnet_command(capsys, "predict", str(tmp_path / "missing.pt"), *images_in(tmp_path, 1))
    assert status == 2 and "missing.pt" in err


def test_missing_images_are_named_before_the_model_is_loaded(tmp_path, capsys, checkpoint, monkeypatch):
    import alexnet.predict

    path, _, _ = checkpoint
    monkeypatch.setattr(alexnet.predict, "load_model", lambda *a: pytest.fail("loaded the model first"))
    image = images_in(tmp_path, 1)[0]
    status, _, err = alexnet_command(capsys, "predict", str(path), image, str(tmp_path / "a.jpg"),
                                     str(tmp_path / "b.jpg"))
    assert status == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'a.jpg'}: no such image file (and 1 more: {tmp_path / 'b.jpg'})" in err


def test_a_model_file_without_a_mean_image_takes_one_with_mean(tmp_path, capsys):
    from alexnet import save_model

    save_model(tiny_alexnet(3), tmp_path / "bare.pt")
    image = images_in(tmp_path, 1)[0]
    status, _, err = alexnet_command(capsys, "predict", str(tmp_path / "bare.pt"), image)
    assert status == 2 and "--mean" in err
    np.save(tmp_path / "mean.npy", np.full((256, 256, 3), 100, np.float32))
    status, out, _ = alexnet_command(capsys, "predict", str(tmp_path / "bare.pt"), image, "--mean", str(tmp_path), "--json")
    assert status == 0 and len(json.loads(out)[0]["predictions"]) == 3


def test_per_channel_means_act_as_a_mean_image_of_those_values(tmp_path):
    paths, model = images_in(tmp_path, 2), tiny_alexnet(5)
    channels = torch.tensor([120.0, 110.0, 100.0])
    by_channel = predict(model, paths, mean=channels, device="cpu")
    by_image = predict(model, paths, mean=channels.expand(256, 256, 3).clone(), device="cpu")
    for a, b in zip(by_channel, by_image):
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
        assert [p["probability"] for p in a["predictions"]] == pytest.approx([p["probability"] for p in b["predictions"]])


def test_a_checkpoint_without_a_mean_uses_the_mean_of_the_data_its_run_trained_on(tmp_path, capsys, checkpoint):
    from alexnet import save_model

    path, model, mean = checkpoint
    (tmp_path / "prepared").mkdir()
    np.save(tmp_path / "prepared" / "mean.npy", mean.numpy())
    save_model(model, tmp_path / "last.pt", class_names=model.class_names, config={"data": str(tmp_path / "prepared")})
    image = images_in(tmp_path, 1)
    outputs = [alexnet_command(capsys, "predict", str(p), *image, "--json", "--device", "cpu") for p in (path, tmp_path / "last.pt")]
    assert [status for status, _, _ in outputs] == [0, 0]
    with_mean, from_config = (json.loads(out)[0]["predictions"] for _, out, _ in outputs)
    assert [p["probability"] for p in from_config] == pytest.approx([p["probability"] for p in with_mean])


class RunsCode:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def not_model_files(folder, good_model) -> dict:
    """Files that are not model files, each with what the error should say it is."""
    import pickle

    whole = good_model.read_bytes()
    files = {
        "README.md": (b"# AlexNet\n\nText, not weights.\n", "it is a text file; a model file is what torch.save writes"),
        "photo.pt": ((folder / "img0.png").read_bytes(), "it is neither a zip archive (torch.save's format) nor a pickle"),
        "empty.pt": (b"", "the file is empty (0 bytes)"),
        "cut.pt": (whole[:len(whole) // 2], "it is truncated or damaged: a zip archive without its end"),
        "code.pt": (pickle.dumps({"model": RunsCode(), "arch": "alexnet", "options": {}}),
                    "it holds pickled Python classes or functions, code that loading would run"),
        "data.pt": (pickle.dumps([1, 2, 3]), "it is a pickle, but not one torch.save wrote"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: said for name, (_, said) in files.items()}


def test_a_file_that_is_not_a_model_file_is_named_with_what_it_is(tmp_path, capsys, checkpoint):
    path, _, _ = checkpoint
    image = images_in(tmp_path, 1)[0]
    for name, said in not_model_files(tmp_path, path).items():
        status, _, err = alexnet_command(capsys, "predict", str(tmp_path / name), image)
        assert status == 2 and err.count("\n") == 1, err
        assert f"alexnet predict: error: {tmp_path / name}: not a readable model file: {said}" in err, err
    assert "pickled code ran" not in capsys.readouterr().out
    status, _, err = alexnet_command(capsys, "predict", str(tmp_path), image)
    assert status == 2 and f"{tmp_path}: a folder without checkpoints/best.pt or checkpoints/last.pt" in err


def test_a_mean_file_that_is_not_a_mean_image_is_named_with_what_it_is(tmp_path, capsys, checkpoint):
    path, _, _ = checkpoint
    image = images_in(tmp_path, 1)[0]
    np.save(tmp_path / "whole.npy", np.zeros((256, 256, 3), np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "whole.npy").read_bytes()[:1000])
    (tmp_path / "notes.npy").write_text("not an array")
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None, 3], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "several.npz", mean=np.zeros(3))
    expected = {"cut.npy": "truncated or damaged", "notes.npy": "not a .npy file", "empty.npy": "the file is empty",
                "objects.npy": "holds object values, not numbers", "several.npz": "not a .npy file"}
    for name, said in expected.items():
        status, _, err = alexnet_command(capsys, "predict", str(path), image, "--mean", str(tmp_path / name))
        assert status == 2 and err.count("\n") == 1, err
        assert f"--mean {tmp_path / name}: {said}" in err, err


def png_claiming(width: int, height: int) -> bytes:
    """A 16-bit greyscale PNG whose header claims ``width`` x ``height`` pixels, with one tiny IDAT."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def test_predict_refuses_an_image_over_prepares_pixel_budget_before_decoding_it(tmp_path, capsys, checkpoint):
    path, _, _ = checkpoint
    (tmp_path / "bomb.png").write_bytes(png_claiming(13000, 13000))
    status, out, err = alexnet_command(capsys, "predict", path, tmp_path / "bomb.png", "--device", "cpu")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert f"{tmp_path / 'bomb.png'}: too large: 13000x13000 pixels above the pixel budget of 33554432" in err
    small = images_in(tmp_path, 1)[0]  # 256x256: within the default budget, over a budget of 60,000
    assert alexnet_command(capsys, "predict", path, small, "--device", "cpu").returncode == 0
    status, _, err = alexnet_command(capsys, "predict", path, small, "--device", "cpu", "--max-pixels", "60000")
    assert status == 2 and "256x256 pixels above the pixel budget of 60000 (--max-pixels)" in err


def lying_model_file(tmp_path, **changes) -> Path:
    """A model file whose record says ``changes`` (options, class names) about a tiny network."""
    from alexnet import save_model

    save_model(tiny_alexnet(10), tmp_path / "liar.pt", class_names=[f"c{i}" for i in range(10)])
    record = torch.load(tmp_path / "liar.pt", weights_only=True)
    record["options"].update(changes.pop("options", {}))
    torch.save(record | changes, tmp_path / "liar.pt")
    return tmp_path / "liar.pt"


@pytest.mark.parametrize("changes, said", [
    ({"options": {"fc_width": 10**9}}, "option fc_width=1000000000: expected an integer (from 1 to 16,384)"),
    ({"options": {"input_size": 20000}}, "option input_size=20000: expected an integer (from 1 to 1,024)"),
    ({"options": {"input_size": 1024, "fc_width": 16384, "channels": None}}, "more than 2,147,483,648 (8 GiB"),
    ({"options": {"input_size": 1024, "channels": [4096] * 5}},  # 570M parameters: the weights' shapes tell
     "weights do not fit its architecture 'alexnet' and options: classifier.fc6.weight is (16, 8) in the file"),
    ({"options": {"lrn": "perhaps"}}, "option lrn=perhaps: expected true or false"),
    ({"options": {"fc_widht": 16}}, "option fc_widht: architecture 'alexnet' has no option fc_widht"),
    ({"arch": "resnet"}, "unknown architecture 'resnet'"),
    ({"class_names": ["cat", "dog"]}, "class_names must be 10 names, one per output of the network, not 2 names"),
])
def test_a_model_file_that_lies_about_its_network_is_refused_naming_the_file_before_anything_is_built(
        tmp_path, capsys, changes, said):
    liar = lying_model_file(tmp_path, **changes)
    status, out, err = alexnet_command(capsys, "predict", liar, *images_in(tmp_path, 1), "--device", "cpu")
    assert status == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"alexnet predict: error: {liar}: ") and said in err and "--model-option" not in err


def test_class_names_with_terminal_escape_sequences_are_printed_escaped(tmp_path, capsys):
    from alexnet import save_model

    names = ["\x1b[2J\x1b[31mred", "plain", "tab\there"]
    save_model(tiny_alexnet(3), tmp_path / "m.pt", class_names=names, mean=torch.full((3,), 120.0))
    status, out, _ = alexnet_command(capsys, "predict", tmp_path / "m.pt", *images_in(tmp_path, 1), "--device", "cpu")
    assert status == 0 and "\x1b" not in out and "\t" not in out
    assert "\\x1b[2J\\x1b[31mred" in out and "tab\\there" in out and "  plain" in out
