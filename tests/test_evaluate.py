"""`alexnet evaluate`: the paper's test protocol (section 4.1) and its error rates (section 2)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from alexnet.errors import UserError
from alexnet.inference import ErrorCounter, evaluate, predictions, topk_correct
from tests.kit import StandInDataset, alexnet_command, make_prepared, tiny_alexnet


def softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.detach().double(), dim=1).numpy()


def by_hand_errors(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    ranked = np.argsort(-probs, axis=1)
    top1 = ranked[:, 0] == labels
    top5 = (ranked[:, :5] == labels[:, None]).any(axis=1)
    return 100 * (1 - top1.mean()), 100 * (1 - top5.mean())


def crop_by_hand(data: StandInDataset, top: int, left: int, flip: bool, size: int = 67) -> torch.Tensor:
    """The float input of one crop of every image: pixels minus the mean image, both cut here."""
    centred = data.images.astype(np.float32) - data.mean
    crop = centred[:, top : top + size, left : left + size]
    crop = crop[:, :, ::-1] if flip else crop
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(0, 3, 1, 2)))


def all_predictions(*args, **kwargs) -> np.ndarray:
    return torch.cat([p for p, _ in predictions(*args, **kwargs)]).numpy()


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


def test_ten_crop_evaluation_averages_the_softmax_of_the_ten_crops_evaluated_one_by_one():
    data = StandInDataset(7, num_classes=6, size=80)
    model = tiny_alexnet(6)
    probs = all_predictions([model], data, "ten", batch_size=3, device="cpu", workers=0)

    last, mid = 80 - 67, (80 - 67) // 2
    corners_and_centre = [(0, 0), (0, last), (last, 0), (last, last), (mid, mid)]
    with torch.no_grad():
        by_hand = [softmax(model(crop_by_hand(data, t, l, flip))) for flip in (False, True) for t, l in corners_and_centre]
    np.testing.assert_allclose(probs, np.mean(by_hand, axis=0), rtol=1e-4, atol=1e-6)

    result = evaluate(model, data, crops="ten", batch_size=3, device="cpu", workers=0, progress=False)
    assert (result["top1_error"], result["top5_error"]) == pytest.approx(by_hand_errors(probs, data.labels))
    assert result["images"] == 7 and result["crops"] == "ten"


def test_an_ensemble_averages_the_softmax_outputs_of_its_networks():
    data = StandInDataset(40, num_classes=7, seed=1, size=80)
    models = [tiny_alexnet(7, seed=s) for s in (1, 2, 3)]
    result = evaluate(models, data, crops="center", batch_size=16, device="cpu", workers=0, progress=False)

    with torch.no_grad():
        by_hand = np.mean([softmax(m(crop_by_hand(data, 6, 6, False))) for m in models], axis=0)
    top1, top5 = by_hand_errors(by_hand, data.labels)
    assert result["images"] == 40 and result["crops"] == "center" and result["models"] == 3
    assert result["top1_error"] == pytest.approx(top1)
    assert result["top5_error"] == pytest.approx(top5)
    hits = np.argmax(by_hand, axis=1) == data.labels
    for c, name in enumerate(data.classes):
        mine = data.labels == c
        assert result["per_class_accuracy"][name] == pytest.approx(100 * hits[mine].mean() if mine.any() else None)


def test_the_model_files_mean_image_takes_precedence_over_the_datasets():
    data = StandInDataset(6, num_classes=3, seed=3, size=80)
    model = tiny_alexnet(3)
    model.mean = data.mean[::-1].copy()  # trained on other data than the data evaluated
    probs = all_predictions([model], data, "center", device="cpu", workers=0)
    with torch.no_grad():
        x = torch.from_numpy(data.images[:, 6:73, 6:73] - model.mean[6:73, 6:73]).permute(0, 3, 1, 2)
        np.testing.assert_allclose(probs, softmax(model(x)), rtol=1e-4, atol=1e-6)


def test_images_smaller_than_the_models_input_are_a_clear_error():
    with pytest.raises(UserError, match="takes 67x67 inputs but the images are 48x48"):
        evaluate(tiny_alexnet(3), StandInDataset(2, num_classes=3, size=48), device="cpu", workers=0, progress=False)


def test_the_networks_of_an_ensemble_must_take_the_same_input_size():
    models = [tiny_alexnet(3), tiny_alexnet(3, input_size=71)]
    with pytest.raises(UserError, match="same input size, not a.pt 67, b.pt 71"):
        evaluate(models, StandInDataset(2, num_classes=3, size=80), device="cpu", workers=0, progress=False, names=["a.pt", "b.pt"])


def test_a_model_whose_classes_differ_from_the_datasets_is_a_clear_error():
    data = StandInDataset(4, num_classes=3, size=80)
    model = tiny_alexnet(3)
    model.class_names = ["c0", "c2", "c1"]
    with pytest.raises(UserError, match="run1/best.pt: .*class 1 is 'c2' in the model, 'c1' in the data"):
        evaluate(model, data, device="cpu", workers=0, progress=False, names=["run1/best.pt"])
    with pytest.raises(UserError, match="knows 4 classes but the data has 3"):
        evaluate(tiny_alexnet(4), data, device="cpu", workers=0, progress=False)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A dataset made by `alexnet prepare`, and two model files trained (here: initialised) on it,
    holding its class names and mean image as training checkpoints do."""
    from alexnet import save_model
    from alexnet.data.dataset import PreparedDataset

    root = tmp_path_factory.mktemp("evaluate")
    out = make_prepared(root, classes=("ant", "bee", "cat"), per_class=(3, 2), encoding="raw")
    train = PreparedDataset(out, "train")
    for seed in (1, 2):
        save_model(tiny_alexnet(3, seed=seed), root / f"cnn{seed}.pt", class_names=train.class_names,
                   mean=torch.from_numpy(train.mean))
    return root


def test_the_command_evaluates_an_ensemble_of_checkpoints_on_a_prepared_split(prepared, capsys):
    from alexnet import load_model
    from alexnet.data.dataset import PreparedDataset

    files = [prepared / "cnn1.pt", prepared / "cnn2.pt"]
    status, out, _ = alexnet_command(capsys, "evaluate", *files, "--data", prepared / "prepared", "--json", "--device", "cpu", "--workers", "0")
    assert status == 0
    found = json.loads(out)
    expected = evaluate([load_model(f) for f in files], PreparedDataset(prepared / "prepared", "val"),
                        crops="ten", device="cpu", workers=0, progress=False)
    assert found["images"] == 6 and found["crops"] == "ten" and found["models"] == 2
    assert found["top1_error"] == pytest.approx(expected["top1_error"])
    assert found["top5_error"] == pytest.approx(expected["top5_error"])
    assert found["per_class_accuracy"] == pytest.approx(expected["per_class_accuracy"])
    assert set(found["per_class_accuracy"]) == {"ant", "bee", "cat"}

    status, out, _ = alexnet_command(capsys, "evaluate", files[0], "--data", prepared / "prepared", "--crops", "center", "--device", "cpu", "--workers", "0")
    assert status == 0
    assert re.fullmatch(r"top-1 error \d+\.\d\d%  top-5 error 0\.00%  on 6 images \(1 model, centre crop\)\n", out)


def test_predict_prepares_an_image_file_exactly_as_prepare_did(prepared, capsys):
    from alexnet import load_model
    from alexnet.data.dataset import PreparedDataset

    data = PreparedDataset(prepared / "prepared", "val")
    status, out, _ = alexnet_command(capsys, "predict", prepared / "cnn1.pt", *sorted((prepared / "images" / "val").glob("*/*.png")),
                             "--json", "--top", "3", "--device", "cpu")
    assert status == 0
    model = load_model(prepared / "cnn1.pt")
    probs = all_predictions([model], data, "ten", device="cpu", workers=0)  # in the prepared order: class, file
    results = json.loads(out)
    assert len(results) == len(probs) == 6
    for result, p in zip(results, probs):
        by_index = sorted(result["predictions"], key=lambda q: q["index"])
        assert [q["probability"] for q in by_index] == pytest.approx(p.tolist(), rel=1e-4)


def test_evaluating_a_checkpoint_of_other_classes_names_it(prepared, capsys, tmp_path):
    from alexnet import save_model

    save_model(tiny_alexnet(3), tmp_path / "dogs.pt", class_names=["beagle", "collie", "pug"])
    status, _, err = alexnet_command(capsys, "evaluate", tmp_path / "dogs.pt", "--data", prepared / "prepared", "--device", "cpu")
    assert status == 2
    assert "dogs.pt: the model's classes differ from the data's: class 0 is 'beagle' in the model, 'ant' in the data" in err


def test_evaluate_predict_and_retrieval_refuse_a_device_name_in_one_line_as_train_does(prepared, capsys, tmp_path):
    image = sorted((prepared / "images" / "val").glob("*/*.png"))[0]
    for argv in (["evaluate", prepared / "cnn1.pt", "--data", prepared / "prepared"],
                 ["predict", prepared / "cnn1.pt", image],
                 ["retrieval", prepared / "cnn1.pt", "--data", prepared / "prepared", "--out", tmp_path]):
        status, _, err = alexnet_command(capsys, *argv, "--device", "nonsense")
        assert status == 2, argv
        assert err == (f"alexnet {argv[0]}: error: --device nonsense: not a device name "
                       "(examples: cpu, cuda, cuda:1, mps)\n"), err


def test_a_model_may_know_its_classes_by_id_or_by_name_and_results_are_keyed_by_id():
    data = StandInDataset(6, num_classes=3, size=80)
    data.classes = [{"index": i, "id": f"n0{i}", "name": "crane"} for i in range(3)]  # names need not be unique
    by_id, by_name = tiny_alexnet(3), tiny_alexnet(3)
    by_id.class_names, by_name.class_names = ["n00", "n01", "n02"], ["crane"] * 3
    for model in (by_id, by_name):
        result = evaluate(model, data, crops="center", device="cpu", workers=0, progress=False)
        assert list(result["per_class_accuracy"]) == ["n00", "n01", "n02"]


def test_evaluate_takes_a_run_folder_for_its_best_pt_as_figures_and_report_do(prepared, capsys, tmp_path):
    import shutil

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    shutil.copy(prepared / "cnn1.pt", tmp_path / "run" / "checkpoints" / "best.pt")
    argv = ["--data", prepared / "prepared", "--crops", "center", "--device", "cpu", "--workers", "0", "--json"]
    by_folder = alexnet_command(capsys, "evaluate", tmp_path / "run", *argv)
    by_file = alexnet_command(capsys, "evaluate", prepared / "cnn1.pt", *argv)
    assert by_folder.returncode == by_file.returncode == 0
    drop = lambda out: {k: v for k, v in json.loads(out).items() if k != "checkpoints"}  # noqa: E731
    assert drop(by_folder.stdout) == drop(by_file.stdout)
    status, _, err = alexnet_command(capsys, "evaluate", tmp_path, *argv)
    assert status == 2 and f"{tmp_path}: a folder without checkpoints/best.pt or checkpoints/last.pt" in err


def test_a_negative_worker_count_is_one_line_naming_the_option(prepared, capsys):
    status, out, err = alexnet_command(capsys, "evaluate", prepared / "cnn1.pt", "--data", prepared / "prepared",
                                       "--workers", "-1", "--device", "cpu")
    assert (status, out, err) == (2, "", "alexnet evaluate: error: --workers must be at least 0, not -1\n")
