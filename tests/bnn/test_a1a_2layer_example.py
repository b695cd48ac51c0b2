"""examples/a1a_2layer.py end to end (smoke): the fair-1 columns plus QP-SBGD sign-matching."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "a1a_2layer.py"


def _load():
    spec = importlib.util.spec_from_file_location("_example_a1a_2layer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a1a_2layer_smoke_has_the_sign_match_column(tmp_path):
    _load().main(["--smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "a1a_2layer.json").read_text())
    assert list(data["methods"]) == [
        "qpsbgd_neal",
        "qpsbgd_exact",
        "qpsbgd_neal_c0",
        "qpsbgd_sm_neal",
        "binaryconnect",
        "signsgd",
        "proxquant",
        "bop",
        "full_precision",
    ]
    assert data["protocol"]["version"] == "fair-1" and data["protocol"]["threads"] == 1
    sm = data["methods"]["qpsbgd_sm_neal"]
    assert sm["fixed"]["formulation"] == "sign_match" and sm["fixed"]["sign_match"] == {
        "rows": 4,
        "decode": "mismatch",
    }
    assert set(sm["chosen"]) == {"lr"}  # sign matching has no curvature to search
    for m in data["methods"].values():
        run = m["runs"][0]
        assert 0.0 <= run["test_accuracy"] <= 1.0 and math.isfinite(run["test_loss"])
    assert data["extra"]["sign_match_rows"] == 4 and data["extra"]["smoke"] is True
    assert "QP-SBGD sign-match (neal)" in (tmp_path / "a1a_2layer.md").read_text()


@pytest.mark.slow
def test_a1a_2layer_bad_arguments_exit_2(capsys):
    module = _load()
    with pytest.raises(SystemExit) as exc:
        module.main(["--smoke", "--out", "/nonexistent-never", "--sign-match-rows", "-1"])
    assert exc.value.code == 2
    assert "--sign-match-rows must be >= 0 (got -1)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        module.main(["--smoke", "--methods", "qpsbgd_sm_exact"])
    assert exc.value.code == 2
    assert "unknown method 'qpsbgd_sm_exact'" in capsys.readouterr().err


# --------------------------------------------------------------------- the D-Wave setting


DWAVE = EXAMPLE.parent / "configs" / "a1a_2layer_dwave.toml"


def test_dwave_config_is_sign_match_packed_on_the_mock():
    from bnn.config import load_config
    from qsgd.errors import ConfigError

    cfg = load_config(DWAVE)
    assert cfg.optimizer.formulation == "sign_match" and cfg.optimizer.sign_match == {
        "rows": 8,
        "decode": "mismatch",
    }
    assert cfg.annealer.backend == "mock-dwave" and cfg.annealer.pack
    assert cfg.annealer.sampler_backend == "mock-dwave-packed"
    with pytest.raises(
        ConfigError, match=r"optimizer.sign_match: sign_match rows must be a positive int .*got 0"
    ):
        load_config(DWAVE, ["optimizer.sign_match={ rows = 0 }"])


@pytest.mark.slow
def test_dwave_config_trains_end_to_end_offline_with_qpu_records(tmp_path, monkeypatch):
    """`bnn train` on the config (2 steps, a small Pegasus mock): QPU calls per step and chain
    breaks land in metrics.jsonl and summary.json, every problem solved by the packed mock."""
    from bnn.cli import main

    monkeypatch.setenv("QSGD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CI", "true")
    run = tmp_path / "run"
    overrides = [
        "train.max_batches_per_epoch=2",
        "annealer.num_reads=2",
        "annealer.options={ topology_shape = [6] }",
        'optimizer.sign_match={ rows = 4, decode = "mismatch" }',
    ]
    argv = ["train", str(DWAVE), "--run-dir", str(run), "--quiet"]
    assert main(argv + [a for o in overrides for a in ("--set", o)]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    assert len(steps) == 2
    for r in steps:
        # one packed call per layer: 5 problems (layer 1) and 2 problems (layer 2)
        assert r["qpu_calls"] == 2 and r["problems_per_call"] == pytest.approx(3.5)
        assert r["solved_by_counts"] == {"mock-dwave-packed": 7}
        assert 0.0 <= r["chain_break_fraction"] < 0.5 and r["qpu_access_time"] > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["qpu_calls"] == 4


def _refused(main, argv: list[str], path: Path, capsys) -> None:
    """``main(argv)`` with ``path`` already there: exit 2, one line naming it, file unchanged."""
    before = path.read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {path} already exists; pass --overwrite to replace it"
    ]
    assert path.read_bytes() == before


@pytest.mark.slow
def test_a1a_2layer_diagnose_smoke(tmp_path, capsys):
    (tmp_path / "a1a_2layer.json").write_text("{}")  # the experiment's file: not the diagnosis's
    argv = ["--diagnose", "--smoke", "--out", str(tmp_path)]
    out = _load().main(argv)
    saved = json.loads((tmp_path / "a1a_2layer_diagnosis.json").read_text())
    assert saved["class_rates"] == out["class_rates"] and len(saved["runs"]) == 7
    assert [r["pattern"] for r in saved["class_rates"]] == ["000", "011", "100", "111"]
    for r in saved["runs"]:
        assert 0.0 <= r["test_accuracy_mean"] <= 1.0 and 0 <= r["odd_networks"] <= r["seeds"] == 1
    _refused(_load().main, argv, tmp_path / "a1a_2layer_diagnosis.json", capsys)


def test_a1a_2layer_sign_match_audit(tmp_path, capsys):
    argv = ["--audit-sign-match", "2", "--backend", "neal", "--num-reads", "2"]
    argv += ["--num-sweeps", "20", "--out", str(tmp_path)]
    out = _load().main(argv)
    path = tmp_path / "a1a_2layer_sign_match_audit_2reads_mismatch.json"
    assert path.is_file()
    _refused(_load().main, argv, path, capsys)
    path.write_text("stale\n")
    again = _load().main([*argv, "--overwrite"])
    saved = json.loads(path.read_text())
    assert saved["layers"] == json.loads(json.dumps(again["layers"]))
    assert saved["command"].endswith(" --overwrite")
    assert set(out["layers"]) == {"net.0", "net.3"} and out["rows"] == 8
    for layer in out["layers"].values():
        assert layer["steps"] == 2 and layer["variables"] in (35, 45)
        assert layer["mismatch_optimum"] <= layer["mismatch_annealer"] + 1e-12
        assert layer["mismatch_optimum"] <= layer["mismatch_sign_grad"] + 1e-12
        assert 0.0 <= layer["steps_at_optimum"] <= 1.0
