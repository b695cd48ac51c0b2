"""examples/digits_pairs.py --model conv: the binary conv net (BinaryCNN) on the 8x8 digit pairs."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "digits_pairs.py"


def _script():
    spec = importlib.util.spec_from_file_location("digits_pairs_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_conv_smoke_writes_digits_conv_results(tmp_path) -> None:
    _script().main(["--model", "conv", "--smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "digits_conv_0v2.json").read_text())
    assert data["task"] == "digits_conv_0v2" and "BinaryCNN" in data["title"]
    assert "BinaryCNN" in data["extra"]["model"] and "--model conv" in data["extra"]["command"]
    assert list(data["methods"]) == [
        "qpsbgd_batched",
        "qpsbgd_batched_c0",
        "binaryconnect",
        "signsgd",
        "proxquant",
        "bop",
        "full_precision",
    ]
    for m in data["methods"].values():
        run = m["runs"][0]
        assert 0.0 <= run["test_accuracy"] <= 1.0 and math.isfinite(run["test_loss"])
    assert (tmp_path / "digits_conv_0v2.md").stat().st_size > 0
    assert not (tmp_path / "digits_0v2.json").exists()  # the MLP experiment keeps its name


def test_conv_model_is_the_binary_cnn_with_the_requested_channels() -> None:
    from bnn.layers import BinaryConv2d
    from qsgd.binary import binary_layers

    module = _script()
    assert module.BinaryCNN is not None
    model = module.BinaryCNN(2, channels=module._channels("3,5"), image_size=8)
    convs = [m for _, m in binary_layers(model) if isinstance(m, BinaryConv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 3), (3, 5)]


@pytest.mark.parametrize("bad", ["8", "8,x", "0,4", "1,2,3"])
def test_bad_channels_exit_2_with_one_line(bad, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _script().main(["--model", "conv", "--channels", bad, "--smoke"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --channels must be two positive ints like 8,16 (got {bad!r})"]


def test_unknown_model_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _script().main(["--model", "resnet", "--smoke"])
    assert exc.value.code == 2
    assert "invalid choice: 'resnet'" in capsys.readouterr().err
