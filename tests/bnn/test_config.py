"""Run-config validation: a table of bad configs with their messages, overrides, round trips."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bnn.config import (
    RunConfig,
    apply_overrides,
    incompatible_changes,
    load_config,
    parse_override,
)
from qsgd.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(
    p for p in (REPO / "examples" / "configs").glob("*.toml") if not p.name.startswith("kernels_")
)

BASE = {"data": {"name": "breast_cancer"}, "optimizer": {"name": "qpsbgd"}}


def with_(**sections):
    """BASE with sections replaced or merged (``None`` removes a section)."""
    out = {k: dict(v) for k, v in BASE.items()}
    for key, value in sections.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def test_example_configs_exist():
    names = {p.name for p in EXAMPLES}
    assert {
        "default.toml",
        "a1a_2layer.toml",
        "a1a_10layer.toml",
        "karate_gcn.toml",
        "cora_gcn.toml",
        "citeseer_gcn.toml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_validates(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.output.run_dir == f"runs/{path.stem}"


def test_paper_configs_have_the_paper_settings():
    two = load_config(REPO / "examples/configs/a1a_2layer.toml")
    assert (two.model.hidden, two.train.batch_size, two.annealer.backend) == ([5], 20, "mock-dwave")
    assert len(two.data.options["features"]) == 3
    ten = load_config(REPO / "examples/configs/a1a_10layer.toml")
    assert (len(ten.model.hidden) + 1, set(ten.model.hidden), ten.train.batch_size) == (
        10,
        {128},
        16,
    )
    assert ten.annealer.backend == "batched"
    default = load_config(REPO / "examples/configs/default.toml")
    assert (default.data.name, default.annealer.backend) == ("breast_cancer", "batched")
    assert (default.optimizer.curvature_scale, default.optimizer.other_lr) == ("fisher", 0.01)


def test_defaults_fill_missing_sections():
    cfg = RunConfig.from_dict(BASE)
    assert cfg.train.epochs == 10 and cfg.train.schedule == "all"
    assert cfg.annealer.backend == "neal"
    assert cfg.optimizer.name == "qpsbgd" and cfg.optimizer.lr == 0.01


BAD_CONFIGS = [
    # (id, raw config, regex the message must match)
    (
        "unknown top key",
        with_(trian={"epochs": 1}),
        r"unknown key 'trian' \(known keys here: .*train",
    ),
    (
        "unknown section key",
        with_(train={"epoch": 3}),
        r"unknown key 'train\.epoch' \(known keys here: .*epochs",
    ),
    (
        "wrong type",
        with_(train={"epochs": "3"}),
        r"train\.epochs must be a valid integer \(got '3'\)",
    ),
    (
        "bool is not int",
        with_(train={"batch_size": True}),
        r"train\.batch_size must be a valid integer",
    ),
    ("out of range", with_(train={"epochs": 0}), r"train\.epochs must be greater than 0 \(got 0\)"),
    ("negative seed", with_(train={"seed": -1}), r"train\.seed must be greater than or equal to 0"),
    (
        "bad schedule",
        with_(train={"schedule": "random"}),
        r"train\.schedule must be 'all', 'round_robin' or 'greedy' \(got 'random'\)",
    ),
    (
        "bad hidden width",
        with_(model={"hidden": [8, 0]}),
        r"model\.hidden\[1\] must be greater than 0",
    ),
    ("bad arch", with_(model={"arch": "rnn"}), r"model\.arch must be 'mlp', 'gcn' or 'cnn'"),
    (
        "unknown optimizer",
        with_(optimizer={"name": "sgd"}),
        r"optimizer\.name must be one of 'qpsbgd', 'binaryconnect', 'signsgd', 'proxquant', "
        r"'bop', 'adam' \(got 'sgd'\)",
    ),
    (
        "optimizer without name",
        {"data": {"name": "digits"}, "optimizer": {"lr": 0.1}},
        r"optimizer\.name is required \(one of 'qpsbgd', ",
    ),
    ("missing optimizer", with_(optimizer=None), r"optimizer is required"),
    ("missing data", with_(data=None), r"data is required"),
    (
        "negative lr",
        with_(optimizer={"lr": -0.1}),
        r"optimizer\.lr must be greater than 0 \(got -0\.1\)",
    ),
    (
        "option of another optimizer",
        with_(optimizer={"name": "signsgd", "curvature": 1.0}),
        r"unknown key 'optimizer\.curvature' \(known keys here: .*momentum",
    ),
    (
        "proxquant growth",
        with_(optimizer={"name": "proxquant", "reg_growth": 0.5}),
        r"optimizer\.reg_growth must be greater than 1",
    ),
    (
        "unknown dataset",
        with_(data={"name": "mnist"}),
        r"data\.name: must be one of .*'breast_cancer'.* \(got 'mnist'\)",
    ),
    (
        "unknown backend",
        with_(annealer={"backend": "qpu9000"}),
        r"annealer\.backend: unknown annealer backend 'qpu9000'; known backends: neal, .*tabu",
    ),
    ("bad num_reads", with_(annealer={"num_reads": 0}), r"annealer\.num_reads"),
    ("unknown annealer key", with_(annealer={"reads": 3}), r"annealer\.reads"),
    ("output type", with_(output={"plots": "yes"}), r"output\.plots must be a valid boolean"),
    (
        "several problems",
        with_(train={"epochs": 0, "batch_size": 0}),
        r"train\.epochs.*; train\.batch_size",
    ),
]


@pytest.mark.parametrize(
    "raw, pattern", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_configs_are_rejected_with_path_value_and_expectation(raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        RunConfig.from_dict(raw)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: '.*nope\.toml'"):
        load_config(tmp_path / "nope.toml")


def test_bad_toml_names_line_and_column(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[data]\nname = "digits"\nepochs 3\n')
    with pytest.raises(ConfigError, match=r"invalid TOML in '.*bad\.toml'.*line 3, column"):
        load_config(path)


def test_relative_data_root_is_resolved_against_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.toml"
    path.write_text('[data]\nname = "a1a"\nroot = "../data"\n[optimizer]\nname = "signsgd"\n')
    assert load_config(path).data.root == str((tmp_path / "data").resolve())


def test_yaml_config_when_pyyaml_is_installed(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: digits}\noptimizer: {name: adam, lr: 0.01}\ntrain: {epochs: 2}\n")
    cfg = load_config(path)
    assert (cfg.data.name, cfg.optimizer.name, cfg.train.epochs) == ("digits", "adam", 2)


# --------------------------------------------------------------------- overrides
@pytest.mark.parametrize(
    "text, key, value",
    [
        ("train.epochs=3", ("train", "epochs"), 3),
        ("optimizer.lr=0.5", ("optimizer", "lr"), 0.5),
        ("output.plots=false", ("output", "plots"), False),
        ("model.hidden=[8, 4]", ("model", "hidden"), [8, 4]),
        ("annealer.backend=tabu", ("annealer", "backend"), "tabu"),
        ('name="a b"', ("name",), "a b"),
        (" train.seed = 7 ", ("train", "seed"), 7),
        ("data.options={features = [1, 2]}", ("data", "options"), {"features": [1, 2]}),
        ("output.run_dir=runs/x=1", ("output", "run_dir"), "runs/x=1"),
    ],
)
def test_parse_override_reads_toml_literals(text, key, value):
    assert parse_override(text) == (key, value)


def test_overrides_apply_in_order_and_create_tables():
    raw = apply_overrides(BASE, ["annealer.backend=tabu", "train.epochs=2", "train.epochs=4"])
    assert raw["annealer"] == {"backend": "tabu"} and raw["train"] == {"epochs": 4}
    assert "annealer" not in BASE  # the input is not modified
    cfg = RunConfig.from_dict(BASE, ["annealer.backend=tabu", "data.options.seed=3"])
    assert cfg.annealer.backend == "tabu" and cfg.data.options == {"seed": 3}


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("train.epochs", r"override must look like KEY=VALUE"),
        ("=3", r"override key must be a dotted path"),
        ("train..epochs=3", r"override key must be a dotted path"),
        (
            "train.epoch=3",
            r"unknown config key 'train\.epoch' in override 'train\.epoch=3' \(keys at train: .*epochs",
        ),
        ("trian.epochs=3", r"unknown config key 'trian'.*keys at top level"),
        ("train.epochs.x=1", r"config key 'train\.epochs' is not a table"),
        ("optimizer.momentumm=0.5", r"unknown config key 'optimizer\.momentumm'"),
    ],
)
def test_bad_overrides(text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        RunConfig.from_dict(BASE, [text])


def test_override_values_are_validated():
    with pytest.raises(ConfigError, match=r"train\.epochs must be greater than 0 \(got 0\)"):
        RunConfig.from_dict(BASE, ["train.epochs=0"])
    with pytest.raises(ConfigError, match=r"annealer\.backend: unknown annealer backend 'nope'"):
        RunConfig.from_dict(BASE, ["annealer.backend=nope"])


# --------------------------------------------------------------------- round trip and resume
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_resolved_config_round_trips_through_toml(path, tmp_path):
    cfg = load_config(path, ["train.epochs=2"])
    saved = cfg.save(tmp_path / "config.toml")
    again = RunConfig.from_dict(tomllib.loads(saved.read_text()))
    assert again == cfg
    assert again.train.epochs == 2


def test_updates_set_python_values_without_parsing():
    cfg = RunConfig.from_dict(BASE, updates={"output.run_dir": "123"})
    assert cfg.output.run_dir == "123"


def test_incompatible_changes():
    old = RunConfig.from_dict(BASE)
    assert incompatible_changes(old, RunConfig.from_dict(BASE, ["train.epochs=50"])) == []
    assert (
        incompatible_changes(old, RunConfig.from_dict(BASE, ["output.run_dir=x", "name=y"])) == []
    )
    changed = RunConfig.from_dict(BASE, ["model.hidden=[4]", "annealer.backend=tabu"])
    assert incompatible_changes(old, changed) == ["annealer.backend", "model.hidden"]


def test_kfac_curvature_scale_is_accepted_from_a_config():
    from bnn.config import RunConfig

    cfg = RunConfig.model_validate(
        {"data": {"name": "digits"}, "optimizer": {"name": "qpsbgd", "curvature_scale": "kfac"}}
    )
    assert cfg.optimizer.curvature_scale == "kfac"
