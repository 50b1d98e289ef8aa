"""`alexnet retrieval`: section 6.1's short binary codes of fc7 features against full Euclidean search."""

import json
import math
import sys

import numpy as np
import pytest
import torch

from alexnet.analysis import neighbours
from alexnet.analysis.codes import BinaryAutoencoder, encode, hamming_search, precision_at_k, train_autoencoder
from tests.kit import alexnet_command, make_prepared, save_run, save_ten_class_run, tiny_alexnet



def brute_hamming(base, queries):
    bits_b, bits_q = np.unpackbits(base, axis=1), np.unpackbits(queries, axis=1)
    return (bits_q[:, None, :] != bits_b[None, :, :]).sum(axis=2)


@pytest.mark.parametrize("chunk", [16, 16384])
def test_hamming_search_equals_brute_force(chunk):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (200, 4), dtype=np.uint8)  # 32-bit codes
    queries = np.concatenate([rng.integers(0, 256, (5, 4), dtype=np.uint8), base[[17, 42]]])
    distances, indices = hamming_search(base, queries, k=8, chunk=chunk, faiss_from=math.inf)
    brute = brute_hamming(base, queries)
    assert np.array_equal(distances, np.sort(brute, axis=1)[:, :8])
    assert np.array_equal(indices, np.argsort(brute, axis=1, kind="stable")[:, :8])  # ties: lower index first
    assert indices[5, 0] == 17 and indices[6, 0] == 42 and distances[5, 0] == 0


def test_faiss_hamming_search_finds_the_same_distances():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    base, queries = rng.integers(0, 256, (300, 8), dtype=np.uint8), rng.integers(0, 256, (6, 8), dtype=np.uint8)
    distances, indices = hamming_search(base, queries, k=5, faiss_from=0)
    assert np.array_equal(distances, hamming_search(base, queries, k=5, faiss_from=math.inf)[0])
    assert np.array_equal(np.take_along_axis(brute_hamming(base, queries), indices, axis=1), distances)  # ties in any order


def test_precision_at_k_is_the_share_of_neighbours_of_the_query_class():
    neighbour_labels = np.array([[1, 1, 2, 1], [0, 3, 3, 3]])
    assert precision_at_k(neighbour_labels, [1, 3]) == pytest.approx((3 + 3) / 8)


def test_encode_packs_the_sign_of_each_code_unit():
    model = BinaryAutoencoder(dim=6, bits=16, hidden=5)
    x = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)
    with torch.no_grad():
        signs = (model.logits(torch.from_numpy(x)) > 0).numpy()
    codes = encode(model, x, batch_size=2)
    assert codes.shape == (3, 2) and codes.dtype == np.uint8
    assert np.array_equal(np.unpackbits(codes, axis=1).astype(bool), signs)


def test_code_length_must_fill_whole_bytes():
    with pytest.raises(ValueError, match="multiple of 8"):
        BinaryAutoencoder(dim=6, bits=12)


def clustered_features(n, classes=4, dim=48, seed=0):
    """fc7-like features: non-negative, one cluster per class (the same centres for every seed)."""
    centres = np.random.default_rng(99).uniform(0, 3, (classes, dim))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    return np.maximum(centres[labels] + rng.normal(0, 0.5, (n, dim)), 0).astype(np.float32), labels


def test_codes_keep_classes_apart_on_clustered_features():
    base, labels = clustered_features(400)
    model = train_autoencoder(base, bits=16, hidden=32, epochs=8, batch_size=32)
    queries, query_labels = clustered_features(40, seed=1)
    _, found = hamming_search(encode(model, base), encode(model, queries), k=5)
    assert precision_at_k(labels[found], query_labels) > 0.9  # chance is about 0.25


def save_features(folder, base_images, queries):
    """Clustered fc7-like features of a base and queries, saved as ``alexnet retrieval`` leaves them."""
    base, labels = clustered_features(base_images)
    query_features, query_labels = clustered_features(queries, seed=2)
    for name, array in (("fc7-train", base), ("labels-train", labels), ("fc7-val", query_features),
                        ("labels-val", query_labels)):
        np.save(folder / f"{name}.npy", array)
    return base, labels, query_features, query_labels


def test_retrieval_command_on_features_in_the_folder(tmp_path, capsys):
    base, labels, queries, query_labels = save_features(tmp_path, 300, 30)
    proc = alexnet_command(capsys, "retrieval", "--out", tmp_path, "--bits", 16, "--hidden", 32, "--k", 5,
                           "--epochs", 3, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "retrieval.json").read_text())
    brute = np.argsort(((queries[:, None] - base[None]) ** 2).sum(2), axis=1)[:, :5]
    assert result["euclidean_fc7"]["precision_at_k"] == pytest.approx(precision_at_k(labels[brute], query_labels))
    assert result["euclidean_fc7"]["bytes_per_image"] == 4 * 48 and result["binary_codes"]["bytes_per_image"] == 2
    assert result["binary_codes"]["index_bytes"] == 2 * 300
    assert result["queries"] == 30 and result["base_images"] == 300
    assert "16-bit codes" in proc.stdout


def test_retrieval_command_without_features_or_a_network_says_what_is_missing(tmp_path, capsys):
    proc = alexnet_command(capsys, "retrieval", "--out", tmp_path)
    assert proc.returncode == 2 and "fc7-train.npy" in proc.stderr and "RUN_DIR_OR_CHECKPOINT" in proc.stderr


def test_retrieval_command_extracts_fc7_features_of_a_network_on_a_prepared_dataset(tmp_path, capsys):
    data = make_prepared(tmp_path / "data", per_class=(6, 2), size=72)
    run = save_run(tmp_path / "run", tiny_alexnet(fc_width=32))  # fc7: 32 features
    out = tmp_path / "out"
    proc = alexnet_command(capsys, "retrieval", run, "--data", data, "--out", out, "--bits", 8, "--hidden", 16,
                           "--k", 3, "--epochs", 1, "--queries", 4, "--workers", 0, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert np.load(out / "fc7-train.npy").shape == (18, 32) and np.load(out / "fc7-val.npy").shape == (4, 32)
    assert np.array_equal(np.load(out / "labels-train.npy"), np.repeat([0, 1, 2], 6))
    result = json.loads((out / "retrieval.json").read_text())
    assert result["base_images"] == 18 and result["queries"] == 4 and result["binary_codes"]["bits"] == 8


def test_retrieval_command_works_without_faiss(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # pip install -e . brings no FAISS
    monkeypatch.setattr(neighbours, "FAISS_FROM", 0)
    save_features(tmp_path, 100, 10)
    proc = alexnet_command(capsys, "retrieval", "--out", tmp_path, "--bits", 16, "--hidden", 16, "--k", 3,
                           "--epochs", 1, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "retrieval.json").read_text())["binary_codes"]["bits"] == 16


def test_retrieval_command_refuses_a_model_of_other_classes_than_the_data(tmp_path, capsys):
    data = make_prepared(tmp_path / "data", per_class=(6, 2), size=72)  # three classes
    run = save_ten_class_run(tmp_path / "run")
    proc = alexnet_command(capsys, "retrieval", run, "--data", data, "--out", tmp_path / "out", "--workers", 0,
                           "--device", "cpu")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "best.pt: the model knows 10 classes but the data has 3" in proc.stderr
    assert not (tmp_path / "out" / "fc7-train.npy").exists()
