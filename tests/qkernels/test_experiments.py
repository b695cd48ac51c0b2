"""The experiment scripts and the CLI run end to end in smoke mode into tmp_path."""

import importlib.util
import json
from pathlib import Path

import pytest

from qkernels.cli import main as cli_main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_qk_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kernels_checkerboard = _load("kernels_checkerboard")
kernels_datasets = _load("kernels_datasets")
kernels_quickstart = _load("kernels_quickstart")


def _check_outputs(out, n_runs):
    result = json.loads((out / "results.json").read_text())
    assert result["smoke"] is True and len(result["runs"]) == n_runs
    run = result["runs"][0]
    for key in ("seed", "before", "after", "train_seconds", "bandwidth"):
        assert key in run
    assert 0.0 <= run["after"]["accuracy"]["test"] <= 1.0
    assert "| dataset | ansatz |" in (out / "results.md").read_text()
    return result


def test_checkerboard_script_smoke(tmp_path):
    result = kernels_checkerboard.main(["--smoke", "--out", str(tmp_path)])
    _check_outputs(tmp_path, 2)
    assert result["runs"][0]["trained"] and not result["runs"][1]["trained"]  # hubregtsen, iqp
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert "checkerboard_hubregtsen_seed0_gram.png" in pngs
    assert "checkerboard_hubregtsen_seed0_alignment.png" in pngs
    assert "checkerboard_hubregtsen_seed0_boundary.png" in pngs


@pytest.mark.slow
def test_datasets_script_smoke(tmp_path):
    result = kernels_datasets.main(["--smoke", "--no-plots", "--out", str(tmp_path)])
    _check_outputs(tmp_path, 14)
    assert sorted({r["dataset"] for r in result["runs"]}) == [
        "breast_cancer",
        "checkerboard",
        "circles",
        "digits",
        "double_cake",
        "iris",
        "moons",
    ]
    assert not (tmp_path / "plots").exists()


def test_quickstart_smoke():
    out = kernels_quickstart.main(["--smoke"])
    assert out["errors"]["mitigated"] < 1e-10 and out["errors"]["noisy"] > 0.01


def test_cli_run_smoke(tmp_path, capsys):
    assert (
        cli_main(
            ["run", "examples/configs/kernels_checkerboard.toml", "--smoke", "--out", str(tmp_path)]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    _check_outputs(tmp_path, 2)


def test_cli_reports_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('datasets = [{name = "mnist"}]\nansatze = [{name = "iqp"}]\n')
    assert cli_main(["run", str(bad)]) == 2
    assert "datasets.0.name: unknown dataset 'mnist'" in capsys.readouterr().err
