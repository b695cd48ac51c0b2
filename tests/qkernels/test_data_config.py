"""Data sets, ansatz registry, devices and the experiment config: good values and a bad-input table."""

import numpy as np
import pytest

from qkernels.ansatz import get_ansatz
from qkernels.config import ExperimentConfig
from qkernels.datasets import DATASETS, check_dataset_args, check_finite, load_dataset
from qkernels.device import make_device
from qkernels.kernel import EmbeddingKernel
from qkernels.svm import QuantumKernelClassifier, QuantumKernelRidge
from qsgd.errors import ConfigError, ProblemError, UnknownBackendError


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


def _with(section: str, **values):
    """GOOD with ``values`` in the table ``section`` (a top-level key when section is "")."""
    if not section:
        return {**GOOD, **values}
    return {**GOOD, section: values}


BAD_CONFIGS = [
    # types are not coerced (strict mode): a TOML string or boolean is no integer
    (
        _with("training", steps="300"),
        r"training\.steps: must be an integer \(got '300' of type string\)",
    ),
    (
        _with("training", steps=True),
        r"training\.steps: must be an integer \(got True of type boolean\)",
    ),
    (
        _with("training", steps=3.5),
        r"training\.steps: must be an integer \(got 3\.5 of type float\)",
    ),
    (_with("training", lr="0.1"), r"training\.lr: must be a number \(got '0\.1' of type string\)"),
    (_with("kernel", trainable_bandwidth=1), r"kernel\.trainable_bandwidth: must be a boolean"),
    (
        {**GOOD, "datasets": [{"name": "moons", "n_train": "10"}]},
        r"datasets\.0\.n_train: must be an integer \(got '10' of type string\)",
    ),
    (_with("", seeds="0"), r"seeds: must be an array \(got '0' of type string\)"),
    (_with("", name=3), r"name: must be a string \(got 3 of type integer\)"),
    # negative counts and out-of-range values
    (
        _with("training", steps=-1),
        r"training\.steps: must be greater than or equal to 0 \(got -1\)",
    ),
    (
        {**GOOD, "datasets": [{"name": "moons", "n_train": -5}]},
        r"datasets\.0\.n_train: must be greater than or equal to 2 \(got -5\)",
    ),
    (
        {**GOOD, "ansatze": [{"name": "iqp", "n_layers": 0}]},
        r"ansatze\.0\.n_layers: must be greater than or equal to 1 \(got 0\)",
    ),
    (_with("", seeds=[0, -1]), r"seeds\.1: must be greater than or equal to 0 \(got -1\)"),
    (_with("", threads=0), r"threads: must be greater than or equal to 1 \(got 0\)"),
    (_with("kernel", bandwidth=0), r"kernel\.bandwidth: must be greater than 0 \(got 0\)"),
    (
        _with("training", batch_size=1),
        r"training\.batch_size: must be greater than or equal to 2 \(got 1\)",
    ),
    (_with("training", lr=float("nan")), r"training\.lr: must be a finite number \(got nan\)"),
    (
        _with("kernel", bandwidth=float("inf")),
        r"kernel\.bandwidth: must be a finite number \(got inf\)",
    ),
    (
        {**GOOD, "datasets": [{"name": "moons", "noise": float("inf")}]},
        r"datasets\.0\.noise: must be a finite number \(got inf\)",
    ),
    # unknown keys, with their dotted path and the keys that exist there
    (
        _with("", extra=1),
        r"extra: unknown key \(known keys here: ansatze, baselines, datasets, .*\) \(got 1\)",
    ),
    (
        _with("training", stpes=3),
        r"training\.stpes: unknown key \(known keys here: batch_size, centered, eval_every, lr, "
        r"optimizer, steps\) \(got 3\)",
    ),
    (
        {**GOOD, "datasets": [{"name": "moons", "size": 3}]},
        r"datasets\.0\.size: unknown key \(known keys here: n_features, n_test, n_train, name, "
        r"noise\)",
    ),
    # unknown names list the known ones
    (
        {**GOOD, "ansatze": [{"name": "qaoa"}]},
        r"ansatze\.0\.name: unknown ansatz 'qaoa'; known: angle, hardware_efficient, hubregtsen, iqp \(got 'qaoa'\)",
    ),
    ({**GOOD, "datasets": [{"name": "mnist"}]}, r"datasets\.0\.name: unknown dataset 'mnist'"),
    (
        _with("kernel", device="qiskit"),
        r"kernel\.device: unknown device 'qiskit'; known: default\.qubit, lightning\.qubit",
    ),
    (_with("training", optimizer="lbfgs"), r"training\.optimizer: unknown optimizer 'lbfgs'"),
    (_with("", plot_seeds="some"), r"plot_seeds: must be 'first' or 'all' \(got 'some'\)"),
    # a value where a table (or an array of tables) belongs
    (_with("", training=3), r"training: must be a table \(got 3 of type integer\)"),
    (
        {**GOOD, "datasets": {"name": "moons"}},
        r"datasets: must be an array \(got \{'name': 'moons'\} of type table\)",
    ),
    ({**GOOD, "ansatze": ["iqp"]}, r"ansatze\.0: must be a table \(got 'iqp' of type string\)"),
    ({**GOOD, "seeds": []}, r"seeds: List should have at least 1 item"),
    ({"ansatze": GOOD["ansatze"]}, r"datasets: required key is missing"),
    # settings checked against each other
    (
        {**GOOD, "datasets": [{"name": "moons", "n_features": 3}]},
        r"datasets\.0: n_features must be 2 for generated dataset 'moons' \(got 3\)",
    ),
    (
        {**GOOD, "datasets": [{"name": "iris", "n_train": 90, "n_test": 20}]},
        r"datasets\.0: n_train \+ n_test must be <= 100 for 'iris' \(got 110\)",
    ),
    (
        {**GOOD, "datasets": [{"name": "iris", "n_features": 5}]},
        r"datasets\.0: n_features must be an int in \[1, 4\] for 'iris' \(got 5\)",
    ),
    (
        {**GOOD, "ansatze": [{"name": "iqp", "n_wires": 1}]},
        r"ansatze\.0\.n_wires: must be >= the 2 features of datasets\.0 \('moons'\) \(got 1\)",
    ),
    (
        {**GOOD, "datasets": [{"name": "digits", "n_features": 30}]},
        r"ansatze\.0\.n_wires: unset, so it is the feature count of datasets\.0 \('digits'\), "
        r"which must be <= 20 qubits here; lower datasets\.0\.n_features \(got 30\)",
    ),
    (
        _with("kernel", device="lightning.qubit"),
        r"kernel\.device: 'lightning\.qubit' computes Gram matrices forward only \(no gradients\), "
        r"so it cannot train the kernel; use device = 'default\.qubit' to train, or set "
        r"training\.steps = 0 \(got training\.steps = 100 with trainable ansatz 'hubregtsen'\)",
    ),
    (
        {
            **GOOD,
            "ansatze": [{"name": "iqp"}],
            "kernel": {"device": "lightning.qubit", "trainable_bandwidth": True},
        },
        r"kernel\.device: 'lightning\.qubit' .* \(got training\.steps = 100 with "
        r"trainable_bandwidth = true\)",
    ),
    (_with("", name="../results"), r"name: must be a folder name .* \(got '\.\./results'\)"),
    (_with("", name=".."), r"name: must be a folder name"),
]


@pytest.mark.parametrize(("data", "match"), BAD_CONFIGS)
def test_bad_config_table(data, match):
    with pytest.raises(ConfigError, match=match) as info:
        ExperimentConfig.from_dict(data)
    message = str(info.value)
    assert "\n" not in message and message.startswith("invalid experiment config: ")


def test_ints_are_accepted_for_floats_and_kept_exact():
    cfg = ExperimentConfig.from_dict(
        {**GOOD, "kernel": {"bandwidth": 2}, "training": {"lr": 1}, "model": {"C": 3}}
    )
    assert cfg.kernel.bandwidth == 2.0 and isinstance(cfg.kernel.bandwidth, float)
    assert cfg.training.lr == 1.0 and cfg.model.C == 3.0


def test_lightning_is_accepted_where_nothing_trains():
    fixed = {**GOOD, "ansatze": [{"name": "iqp"}], "kernel": {"device": "lightning.qubit"}}
    assert ExperimentConfig.from_dict(fixed).training.steps == 100  # iqp has nothing to train
    no_steps = {**GOOD, "kernel": {"device": "lightning.qubit"}, "training": {"steps": 0}}
    assert ExperimentConfig.from_dict(no_steps).kernel.device == "lightning.qubit"


def test_several_problems_are_reported_on_one_line():
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict({**GOOD, "training": {"steps": "3", "lr": -1}})
    message = str(info.value)
    assert "\n" not in message
    assert "training.steps: must be an integer" in message
    assert "training.lr: must be greater than 0 (got -1)" in message


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"config file '.*none\.toml' does not exist"):
        ExperimentConfig.from_file(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ConfigError, match=r"is not valid TOML: .*\(at end of document\)"):
        ExperimentConfig.from_file(bad)
    with pytest.raises(
        ConfigError, match=r"config path '.*' is not a file \(a TOML file is expected\)"
    ):
        ExperimentConfig.from_file(tmp_path)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ConfigError, match=r"cannot read config file '.*binary\.toml'"):
        ExperimentConfig.from_file(binary)
    typed = tmp_path / "typed.toml"
    typed.write_text(
        '[[datasets]]\nname = "moons"\n[[ansatze]]\nname = "iqp"\n[training]\nsteps = "300"\n'
    )
    with pytest.raises(
        ConfigError,
        match=r"invalid experiment config '.*typed\.toml': training\.steps: must be an integer "
        r"\(got '300' of type string\)",
    ):
        ExperimentConfig.from_file(typed)


@pytest.mark.parametrize(
    "path", ["examples/configs/kernels_checkerboard.toml", "examples/configs/kernels_datasets.toml"]
)
def test_shipped_configs_validate(path):
    assert ExperimentConfig.from_file(path).datasets


# ----------------------------------------------------------------- NaN / inf in the data
def test_non_finite_generated_points_are_refused_naming_dataset_and_rows():
    # a noise level this large overflows to inf in some rows; before the fix the scaler crashed
    with pytest.raises(
        ProblemError,
        match=r"dataset 'checkerboard' \(generated with noise=1e\+308\) must be finite "
        r"\(got NaN or inf in rows \d+, \d+, \d+, \d+, \d+ and \d+ more\)",
    ):
        load_dataset("checkerboard", n_train=40, n_test=40, noise=1e308, seed=0)


@pytest.mark.parametrize("noise", [float("inf"), float("nan"), -0.1, "0.1", True])
def test_bad_noise_is_refused(noise):
    with pytest.raises(ConfigError, match=r"noise must be a finite float >= 0 \(got "):
        load_dataset("moons", noise=noise)


def test_check_finite_names_the_first_rows():
    X = np.zeros((8, 2))
    X[3, 1] = np.nan
    with pytest.raises(ProblemError, match=r"^X must be finite \(got NaN or inf in row 3\)$"):
        check_finite(X, "X")
    check_finite(np.ones((3, 2)), "X")  # finite: no error


def test_single_class_training_split_is_refused():
    with pytest.raises(
        ProblemError,
        match=r"dataset 'moons' with seed 0: the 4 training points hold one class only",
    ):
        load_dataset("moons", n_train=4, n_test=4, seed=0)


def test_check_dataset_args_matches_load_dataset():
    check_dataset_args("iris", n_train=50, n_test=50, n_features=4)
    load_dataset("iris", n_train=50, n_test=50, n_features=4)
    with pytest.raises(ConfigError, match=r"n_train \+ n_test must be <= 100 for 'iris'"):
        check_dataset_args("iris", n_train=51, n_test=50)


@pytest.mark.parametrize("estimator", [QuantumKernelClassifier, QuantumKernelRidge])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_estimators_refuse_non_finite_inputs(estimator, bad):
    rng = np.random.default_rng(0)
    X, y = rng.uniform(-1, 1, size=(6, 2)), np.array([1, -1] * 3)
    X_bad = X.copy()
    X_bad[2, 1] = bad
    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        estimator(n_wires=2, n_layers=1).fit(X_bad, y)
    model = estimator(n_wires=2, n_layers=1)
    model.fit(X, y)
    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        model.predict(X_bad)
