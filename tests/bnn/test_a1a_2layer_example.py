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
    assert sm["fixed"]["formulation"] == "sign_match" and sm["fixed"]["sign_match"] == {"rows": 4}
    assert set(sm["chosen"]) == {"lr"}  # sign matching has no curvature to search
    for m in data["methods"].values():
        run = m["runs"][0]
        assert 0.0 <= run["test_accuracy"] <= 1.0 and math.isfinite(run["test_loss"])
    assert data["extra"]["sign_match_rows"] == 4 and data["extra"]["smoke"] is True
    assert "QP-SBGD sign-match (neal)" in (tmp_path / "a1a_2layer.md").read_text()


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
