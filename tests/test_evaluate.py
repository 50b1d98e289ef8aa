"""`alexnet evaluate`: the paper's test protocol (section 4.1) and its error rates (section 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evalkit import TinyData, TinyNet

from alexnet.errors import UserError
from alexnet.evaluate import (
    ErrorCounter,
    class_probabilities,
    crop_windows,
    evaluate,
    normalize,
    take_crops,
    topk_correct,
)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def by_hand_errors(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    ranked = np.argsort(-probs, axis=1)
    top1 = ranked[:, 0] == labels
    top5 = (ranked[:, :5] == labels[:, None]).any(axis=1)
    return 100 * (1 - top1.mean()), 100 * (1 - top5.mean())


def test_top1_and_top5_error_count_the_label_among_the_most_probable_classes():
    probs = torch.tensor(
        [
            [0.50, 0.20, 0.10, 0.08, 0.06, 0.04, 0.02],  # label 0: first
            [0.50, 0.20, 0.10, 0.08, 0.06, 0.04, 0.02],  # label 4: fifth
            [0.50, 0.20, 0.10, 0.08, 0.06, 0.04, 0.02],  # label 5: sixth, a top-5 miss
            [0.02, 0.04, 0.06, 0.08, 0.10, 0.20, 0.50],  # label 6: first
        ]
    )
    labels = torch.tensor([0, 4, 5, 6])
    assert topk_correct(probs, labels, 1).tolist() == [True, False, False, True]
    assert topk_correct(probs, labels, 5).tolist() == [True, True, False, True]
    counter = ErrorCounter(7)
    counter.update(probs[:2], labels[:2])
    counter.update(probs[2:], labels[2:])
    result = counter.result([f"c{i}" for i in range(7)])
    assert result["images"] == 4
    assert result["top1_error"] == pytest.approx(50.0)
    assert result["top5_error"] == pytest.approx(25.0)
    assert result["per_class_accuracy"] == {"c0": 100.0, "c1": None, "c2": None, "c3": None, "c4": 0.0, "c5": 0.0, "c6": 100.0}


def test_ten_crops_are_the_centre_and_four_corners_then_their_reflections():
    assert crop_windows(10, 12, 6, "ten") == [
        (2, 3, False), (0, 0, False), (0, 6, False), (4, 0, False), (4, 6, False),
        (2, 3, True), (0, 0, True), (0, 6, True), (4, 0, True), (4, 6, True),
    ]
    assert crop_windows(256, 256, 227, "center") == [(14, 14, False)]
    images = torch.arange(2 * 3 * 10 * 12).view(2, 3, 10, 12)
    crops = take_crops(images, 6, "ten").view(2, 10, 3, 6, 6)
    assert torch.equal(crops[1, 2], images[1, :, 0:6, 6:12])
    assert torch.equal(crops[0, 8], images[0, :, 4:10, 0:6].flip(-1))


def test_crops_larger_than_the_image_are_a_clear_error():
    with pytest.raises(UserError, match="227x227 inputs but the images are 32x32"):
        crop_windows(32, 32, 227, "center")


def test_ten_crop_evaluation_averages_the_softmax_of_the_ten_crops_evaluated_one_by_one():
    data = TinyData(5, num_classes=4)
    model = TinyNet(4).eval()
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2)
    probs = class_probabilities([model], images, "ten", [torch.from_numpy(data.mean)])

    centred = data.images.astype(np.float32) - data.mean  # [N, H, W, 3]
    s, last = 8, 12 - 8
    by_hand = []
    for top, left in [(2, 2), (0, 0), (0, last), (last, 0), (last, last)]:
        for flip in (False, True):
            crop = centred[:, top : top + s, left : left + s]
            crop = crop[:, :, ::-1] if flip else crop
            x = torch.from_numpy(np.ascontiguousarray(crop.transpose(0, 3, 1, 2)))
            by_hand.append(softmax(model(x).detach().numpy()))
    np.testing.assert_allclose(probs.numpy(), np.mean(by_hand, axis=0), rtol=1e-5, atol=1e-7)


def test_an_ensemble_averages_the_softmax_outputs_of_its_networks():
    data = TinyData(40, num_classes=7, seed=1)
    models = [TinyNet(7, seed=s) for s in (1, 2, 3)]
    result = evaluate(models, data, crops="center", batch_size=16, device="cpu", workers=0, progress=False)

    x = torch.from_numpy((data.images.astype(np.float32) - data.mean)[:, 2:10, 2:10].transpose(0, 3, 1, 2).copy())
    by_hand = np.mean([softmax(m(x).detach().numpy()) for m in models], axis=0)
    top1, top5 = by_hand_errors(by_hand, data.labels)
    assert result["images"] == 40 and result["crops"] == "center" and result["models"] == 3
    assert result["top1_error"] == pytest.approx(top1)
    assert result["top5_error"] == pytest.approx(top5)
    hits = np.argmax(by_hand, axis=1) == data.labels
    for c, name in enumerate(data.classes):
        mine = data.labels == c
        expected = 100 * hits[mine].mean() if mine.any() else None
        assert result["per_class_accuracy"][name] == pytest.approx(expected)


def test_ten_crop_evaluation_of_a_dataset_matches_its_probabilities():
    data = TinyData(9, num_classes=6, seed=2)
    model = TinyNet(6, seed=4)
    result = evaluate(model, data, crops="ten", batch_size=4, device="cpu", workers=0, progress=False)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2)
    probs = class_probabilities([model], images, "ten", [torch.from_numpy(data.mean)]).numpy()
    assert (result["top1_error"], result["top5_error"]) == pytest.approx(by_hand_errors(probs, data.labels))


def test_the_model_files_mean_image_takes_precedence_over_the_datasets():
    data = TinyData(6, num_classes=3, seed=3)
    model = TinyNet(3)
    model.mean = torch.zeros(3)  # a model trained on uncentred pixels
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2)
    expected = class_probabilities([model], images, "center", [torch.zeros(3)]).numpy()
    result = evaluate(model, data, crops="center", device="cpu", workers=0, progress=False)
    assert result["top1_error"] == pytest.approx(by_hand_errors(expected, data.labels)[0])


def test_imagenet_normalization_is_torchvisions_mean_and_std_on_the_unit_scale():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    out = normalize(images, TinyNet(3, normalization="imagenet"), mean=None)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (images.numpy() / 255.0 - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)


def test_a_mean_image_model_without_a_mean_is_a_clear_error():
    with pytest.raises(UserError, match="mean image"):
        normalize(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), TinyNet(3), mean=None)


def test_a_model_whose_classes_differ_from_the_datasets_is_a_clear_error():
    data = TinyData(4, num_classes=3)
    model = TinyNet(3)
    model.class_names = ["c0", "c2", "c1"]
    with pytest.raises(UserError, match="run1/best.pt: .*class 1 is 'c2' in the model, 'c1' in the data"):
        evaluate(model, data, device="cpu", workers=0, progress=False, names=["run1/best.pt"])
    with pytest.raises(UserError, match="knows 4 classes but the data has 3"):
        evaluate(TinyNet(4), data, device="cpu", workers=0, progress=False)
