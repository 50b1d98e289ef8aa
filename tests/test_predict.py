"""`alexnet predict`: the paper's preprocessing (section 2) and the five most probable classes."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from evalkit import TinyNet
from PIL import Image

from alexnet.errors import UserError
from alexnet.evaluate import class_probabilities
from alexnet.predict import format_predictions, load_image, load_mean, predict

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
    with pytest.raises(UserError, match="notes.jpg: not an image"):
        load_image(tmp_path / "notes.jpg")


def images_in(tmp_path, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (256 + 40 * i, 256, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_predict_lists_the_most_probable_classes_with_their_softmax_probabilities(tmp_path):
    paths = images_in(tmp_path, 3)
    model = TinyNet(7, input_size=32)
    mean = torch.full((256, 256, 3), 120.0)
    results = predict(model, paths, crops="ten", top=5, mean=mean, device="cpu")

    images = torch.from_numpy(np.stack([load_image(p) for p in paths])).permute(0, 3, 1, 2)
    probs = class_probabilities([model], images, "ten", [mean]).numpy()
    assert [r["image"] for r in results] == paths
    for result, p in zip(results, probs):
        ranked = np.argsort(-p)[:5]
        assert [q["index"] for q in result["predictions"]] == ranked.tolist()
        assert [q["class"] for q in result["predictions"]] == [f"c{i}" for i in ranked]
        assert [q["probability"] for q in result["predictions"]] == pytest.approx(p[ranked].tolist())


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
        predict(TinyNet(3, input_size=32), images_in(tmp_path, 1), device="cpu")


def test_the_mean_image_is_read_from_mean_npy_or_the_prepared_folder(tmp_path):
    mean = np.random.default_rng(0).uniform(0, 255, (256, 256, 3)).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean)
    assert np.array_equal(load_mean(tmp_path).numpy(), mean)
    np.save(tmp_path / "bad.npy", np.zeros((4, 4)))
    with pytest.raises(UserError, match="bad.npy: expected a 256x256x3 mean image"):
        load_mean(tmp_path / "bad.npy")
