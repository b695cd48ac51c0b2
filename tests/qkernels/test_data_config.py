"""Data sets, ansatz registry, devices and the experiment config: good values and a bad-input table."""

import numpy as np
import pytest

from qkernels.ansatz import get_ansatz
from qkernels.config import ExperimentConfig
from qkernels.datasets import DATASETS, load_dataset
from qkernels.device import make_device
from qkernels.kernel import EmbeddingKernel
from qsgd.errors import ConfigError, UnknownBackendError


@pytest.mark.parametrize("name", DATASETS)
def test_datasets_are_seeded_scaled_and_binary(name):
    a = load_dataset(name, n_train=20, n_test=10, seed=3, n_features=None)
    b = load_dataset(name, n_train=20, n_test=10, seed=3)
    c = load_dataset(name, n_train=20, n_test=10, seed=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)
    assert a.X_train.shape == (20, a.n_features) and a.X_test.shape == (10, a.n_features)
    assert set(np.unique(a.y_train)) == {-1, 1}
    np.testing.assert_allclose(a.X_train.min(0), -1.0)
    np.testing.assert_allclose(a.X_train.max(0), 1.0)


def test_packaged_sets_are_pca_reduced_to_the_qubit_count():
    assert load_dataset("breast_cancer", n_features=6).n_features == 6
    assert load_dataset("digits", n_features=3).n_features == 3


def test_checkerboard_labels_follow_the_board():
    ds = load_dataset("checkerboard", n_train=200, n_test=2, seed=0)
    cells = np.floor((ds.X_train + 1) / 2 * 4 - 1e-9).clip(0, 3)  # min-max rescaled board
    parity = np.where(cells.sum(1) % 2 == 0, 1, -1)
    assert (parity == ds.y_train).mean() > 0.9


# ---------------------------------------------------------------- bad input table
BAD_CALLS = [
    (
        lambda: get_ansatz("qaoa", 2),
        UnknownBackendError,
        r"unknown ansatz 'qaoa'; known ansätze: angle, hardware_efficient, hubregtsen, iqp",
    ),
    (
        lambda: make_device("qiskit.aer", 2),
        UnknownBackendError,
        r"unknown device 'qiskit.aer'; known devices: default.qubit, lightning.qubit",
    ),
    (lambda: get_ansatz("iqp", 0), ConfigError, r"n_wires must be a positive int \(got 0\)"),
    (
        lambda: get_ansatz("iqp", 2, n_features=3),
        ConfigError,
        r"n_features must be an int in \[1, n_wires=2\] \(got 3\)",
    ),
    (
        lambda: EmbeddingKernel(get_ansatz("iqp", 3)).gram(np.ones((4, 2))),
        ValueError,
        r"expected 3 features, got 2",
    ),
    (
        lambda: EmbeddingKernel(get_ansatz("iqp", 2)).gram(np.array([[0.1, np.nan], [0.0, 0.0]])),
        ValueError,
        r"x_a must be finite \(got NaN or inf in rows \[0\]\)",
    ),
    (
        lambda: EmbeddingKernel(get_ansatz("iqp", 2)).gram(np.ones((2, 2, 2))),
        ValueError,
        r"x_a must be a 2-D array",
    ),
    (
        lambda: EmbeddingKernel(get_ansatz("iqp", 2), bandwidth=-1.0),
        ConfigError,
        r"bandwidth must be a positive finite float \(got -1.0\)",
    ),
    (
        lambda: EmbeddingKernel(get_ansatz("hubregtsen", 2), params=np.zeros(3)),
        ValueError,
        r"params must have shape \(2, 2, 2\)",
    ),
    (
        lambda: load_dataset("mnist"),
        UnknownBackendError,
        r"unknown dataset 'mnist'; known datasets: breast_cancer",
    ),
    (
        lambda: load_dataset("moons", n_features=3),
        ConfigError,
        r"n_features must be 2 for generated dataset 'moons' \(got 3\)",
    ),
    (
        lambda: load_dataset("iris", n_train=90, n_test=20),
        ConfigError,
        r"n_train \+ n_test must be <= 100",
    ),
]


@pytest.mark.parametrize(("call", "exc", "match"), BAD_CALLS)
def test_bad_input_table(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


GOOD = {
    "datasets": [{"name": "moons", "n_train": 10, "n_test": 10}],
    "ansatze": [{"name": "hubregtsen", "n_layers": 2}],
}


def test_good_config_and_defaults():
    cfg = ExperimentConfig.from_dict(GOOD)
    assert cfg.seeds == [0] and cfg.kernel.device == "default.qubit" and cfg.training.steps == 100
    smoke = cfg.smoke_version()
    assert smoke.training.steps == 3 and smoke.datasets[0].n_train == 12


BAD_CONFIGS = [
    ({**GOOD, "extra": 1}, r"extra: unknown key \(not part of the schema\) \(got 1\)"),
    (
        {**GOOD, "ansatze": [{"name": "qaoa"}]},
        r"ansatze\.0\.name: unknown ansatz 'qaoa'; known: angle, hardware_efficient, hubregtsen, iqp \(got 'qaoa'\)",
    ),
    ({**GOOD, "datasets": [{"name": "mnist"}]}, r"datasets\.0\.name: unknown dataset 'mnist'"),
    (
        {**GOOD, "kernel": {"device": "qiskit"}},
        r"kernel\.device: unknown device 'qiskit'; known: default\.qubit, lightning\.qubit",
    ),
    (
        {**GOOD, "kernel": {"bandwidth": 0}},
        r"kernel\.bandwidth: Input should be greater than 0 \(got 0\)",
    ),
    (
        {**GOOD, "training": {"batch_size": 1}},
        r"training\.batch_size: Input should be greater than or equal to 2 \(got 1\)",
    ),
    (
        {**GOOD, "training": {"optimizer": "lbfgs"}},
        r"training\.optimizer: unknown optimizer 'lbfgs'",
    ),
    ({**GOOD, "training": {"stpes": 3}}, r"training\.stpes: unknown key"),
    ({**GOOD, "seeds": []}, r"seeds: List should have at least 1 item"),
    ({"ansatze": GOOD["ansatze"]}, r"datasets: Field required"),
]


@pytest.mark.parametrize(("data", "match"), BAD_CONFIGS)
def test_bad_config_table(data, match):
    with pytest.raises(ConfigError, match=match):
        ExperimentConfig.from_dict(data)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist"):
        ExperimentConfig.from_file(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ConfigError, match=r"is not valid TOML"):
        ExperimentConfig.from_file(bad)


@pytest.mark.parametrize(
    "path", ["examples/configs/kernels_checkerboard.toml", "examples/configs/kernels_datasets.toml"]
)
def test_shipped_configs_validate(path):
    assert ExperimentConfig.from_file(path).datasets
