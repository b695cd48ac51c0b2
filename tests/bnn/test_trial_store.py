"""The trial store: an interrupted experiment resumes without rerunning finished runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import bnn.training
from bnn import experiments
from bnn.data import get_dataset
from bnn.experiments import Method, Task, run_method, train_once
from bnn.models import BinaryMLP
from bnn.trial_store import TrialStore, use_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def task():
    ds = experiments.shrink_tabular(get_dataset("digits"), train=120, val=40, test=40)
    return Task(
        "digits_tiny",
        ds,
        lambda d, binary: BinaryMLP(d.num_features, [8], d.num_classes, binary=binary),
        epochs=2,
        batch_size=32,
    )


@pytest.fixture()
def store(tmp_path):
    yield use_store(tmp_path / "store")
    use_store(None)


def test_rerun_reuses_every_run_and_gives_identical_results(task, store, monkeypatch):
    method = Method("signsgd", "signSGD", "signsgd", axes={"lr": [0.003, 0.01, 0.03]})
    first = run_method(task, method, seeds=[0, 1], search_seed=100)
    assert len(store) == first["budget"] + 2  # every search trial (extensions too) + two seeds

    def no_training(*args, **kwargs):
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(bnn.training, "fit", no_training)
    again = run_method(task, method, seeds=[0, 1], search_seed=100)
    assert experiments.numbers_only(again["runs"]) == experiments.numbers_only(first["runs"])
    assert again["chosen"] == first["chosen"]


def test_key_changes_with_setting_seed_and_model(task, store):
    method = Method("signsgd", "signSGD", "signsgd", grid=[{"lr": 0.01}])
    train_once(task, method, {"lr": 0.01}, 0)
    train_once(task, method, {"lr": 0.02}, 0)
    train_once(task, method, {"lr": 0.01}, 1)
    wider = Task(task.name, task.dataset, lambda d, b: BinaryMLP(d.num_features, [9], 10, binary=b),
                 epochs=2, batch_size=32)
    train_once(wider, method, {"lr": 0.01}, 0)
    assert len(store) == 4


def test_unreadable_record_is_rerun(task, store):
    method = Method("signsgd", "signSGD", "signsgd", grid=[{"lr": 0.01}])
    rec = train_once(task, method, {"lr": 0.01}, 0)
    (path,) = store.root.glob("*.json")
    path.write_text("{truncated")
    again = train_once(task, method, {"lr": 0.01}, 0)
    assert again["test_accuracy"] == rec["test_accuracy"]
    assert json.loads(path.read_text())["record"]["seed"] == 0


def test_store_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="must be a folder"):
        TrialStore(f)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "digits_pairs.py"), "--smoke",
         "--resume-dir", str(f), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "--resume-dir" in proc.stderr and "must be a folder" in proc.stderr
    assert "Traceback" not in proc.stderr
