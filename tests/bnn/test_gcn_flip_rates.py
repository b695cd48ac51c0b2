"""examples/gcn_flip_rates.py: per-step sign flips of each method's chosen GCN setting."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KARATE = Path(__file__).resolve().parents[2] / "results" / "gcn" / "gcn_karate.json"


def _script():
    sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(
        "gcn_flip_rates_script", EXAMPLES / "gcn_flip_rates.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recorder_counts_sign_changes_of_the_outer_optimizer_only():
    """The hooks see the binary weight's flips once per outer step, not the inner Adam's."""
    fr = _script()
    w = torch.nn.Parameter(torch.tensor([[0.5, -0.5, 0.1, 2.0]]))
    w._bnn_binary = True
    bn = torch.nn.Parameter(torch.ones(3))

    class Outer(torch.optim.Optimizer):
        def __init__(self):
            super().__init__([w], {})
            self.inner = torch.optim.SGD([bn], lr=0.1)

        def step(self, closure=None):
            self.inner.step()
            with torch.no_grad():
                w.sub_(torch.tensor([[1.0, 0.0, 0.2, 0.0]]))  # flips entries 0 and 2

    opt = Outer()
    bn.grad = torch.ones(3)
    with fr.FlipRecorder() as rec:
        opt.step()
        opt.step()  # entry 0 stays negative, entry 2 stays negative: no flips
    assert rec.steps == [{"0:1x4": 0.5}, {"0:1x4": 0.0}]
    opt.step()  # hooks removed on exit
    assert len(rec.steps) == 2


def test_flip_rates_on_karate_reproduce_the_run_and_count_flips(tmp_path):
    fr = _script()
    rec = fr.main(
        [str(KARATE), "--epochs", "3", "--methods", "signsgd,binaryconnect", "--out", str(tmp_path)]
    )
    saved = json.loads((tmp_path / "flip_rates_gcn_karate.json").read_text())
    assert saved["methods"].keys() == {"signsgd", "binaryconnect"} == rec["methods"].keys()
    for key, m in saved["methods"].items():
        assert len(m["steps"]) == 3  # full batch: one step per epoch
        assert m["steps"][0].keys() == {"0:16x34", "1:2x16"}
        assert all(0.0 <= v <= 1.0 for s in m["steps"] for v in s.values())
        assert m["hparams"] == json.loads(KARATE.read_text())["methods"][key]["chosen"]
    # signSGD moves every latent weight by lr: some flip in 3 steps
    assert max(s["0:16x34"] for s in saved["methods"]["signsgd"]["steps"]) > 0


def _exit_line(fn, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        fn()
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_bad_input_and_existing_output_exit_2_with_one_line(tmp_path, capsys):
    fr = _script()
    line = _exit_line(lambda: fr.main([str(KARATE), "--methods", "full_precision"]), capsys)
    assert "--methods" in line and "full_precision" in line
    line = _exit_line(lambda: fr.main([str(tmp_path / "missing.json")]), capsys)
    assert "missing.json" in line
    line = _exit_line(lambda: fr.main([str(KARATE), "--epochs", "0"]), capsys)
    assert "--epochs" in line and "0" in line
    line = _exit_line(lambda: fr.main([str(KARATE), "--hidden", "0"]), capsys)
    assert "--hidden" in line and "(got 0)" in line
    line = _exit_line(lambda: fr.main([str(KARATE), "--seed", "-1"]), capsys)
    assert "--seed" in line and "(got -1)" in line
    out = tmp_path / "flip_rates_gcn_karate.json"
    out.write_text("keep me")
    line = _exit_line(lambda: fr.main([str(KARATE), "--out", str(tmp_path)]), capsys)
    assert str(out) in line and "--overwrite" in line
    assert out.read_text() == "keep me"


def test_recorder_agrees_with_qpsbgd_own_flip_count():
    """On QP-SBGD the hooks count what the optimiser reports itself (``last_stats``)."""
    from bnn.baselines import make_optimizer
    from bnn.models import BinaryMLP

    fr = _script()
    torch.manual_seed(0)
    model = BinaryMLP(6, [5], 2)
    opt = make_optimizer(
        "qpsbgd", model, lr=0.3, curvature=1.0, backend="exact", other_lr=0.01, seed=0
    )
    x, y = torch.randn(8, 6).sign(), torch.tensor([0, 1] * 4)
    with fr.FlipRecorder() as rec:
        for _ in range(4):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            own = [r["flip_ratio"] for r in opt.last_stats]
            assert list(rec.steps[-1].values()) == pytest.approx(own)
    assert len(rec.steps) == 4 and any(v > 0 for s in rec.steps for v in s.values())


def test_recorded_option_reads_the_results_command():
    fr = _script()
    cmd = "python examples/gcn.py --datasets cora --hidden 128 --data-root '/a b' --out x"
    assert fr.recorded_option(cmd, "--hidden") == "128"
    assert fr.recorded_option(cmd, "--data-root") == "/a b"
    assert fr.recorded_option(cmd, "--seeds") is None
