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


def test_every_pairs_files_are_checked_before_any_training(tmp_path, capsys) -> None:
    """A result of the last pair is refused before the first pair trains (immediate exit 2)."""
    (tmp_path / "digits_conv_1v7.md").write_text("earlier")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        _script().main(["--model", "conv", "--pairs", "0/2,1/7", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path / 'digits_conv_1v7.md'} already exists; pass --overwrite to replace it"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits_conv_1v7.md"]


def test_mlp_and_conv_results_do_not_block_each_other(tmp_path, monkeypatch) -> None:
    """The MLP's ``digits_<a>v<b>`` files do not stop the conv net's ``digits_conv_<a>v<b>``
    (and back); each run writes (here: would write) its own stems."""
    module = _script()
    stems: list[str] = []
    monkeypatch.setattr(module, "run_and_write", lambda *a, stem, **k: stems.append(stem))
    (tmp_path / "digits_0v2.json").write_text("{}")
    (tmp_path / "digits_conv_1v7.json").write_text("{}")
    module.main(["--model", "conv", "--pairs", "0/2", "--out", str(tmp_path)])
    module.main(["--pairs", "1/7", "--out", str(tmp_path)])
    assert stems == ["digits_conv_0v2", "digits_1v7"]


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
