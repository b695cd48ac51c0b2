"""examples/ablation_exact.py: the energy-gap audit and the script end to end (smoke)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ablation_exact.py"


@pytest.fixture(scope="module")
def abl():
    spec = importlib.util.spec_from_file_location("_example_ablation_exact", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _batch(n=6, m=5, seed=0, offset=0.0):
    from qsgd.ising import IsingBatch

    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    J = A + A.T
    np.fill_diagonal(J, 0.0)
    return IsingBatch.from_arrays(rng.normal(size=(m, n)), J, offset=offset)


def test_gap_is_zero_at_the_optimum_and_one_at_the_random_mean(abl):
    log = abl.GapLog()
    opt = np.array([-3.0, -1.0])
    rand = np.array([1.0, 1.0])
    log.add(opt.copy(), opt, rand)
    log.add(rand.copy(), opt, rand)
    rec = log.record()
    assert rec["problems"] == 4 and rec["fraction_optimal"] == 0.5
    assert rec["mean_rel_gap"] == pytest.approx(0.5) and rec["max_rel_gap"] == pytest.approx(1.0)


def test_the_random_mean_is_the_offset(abl):
    """E_rand = offset: the mean energy over all spin vectors, checked by enumeration."""
    import itertools

    batch = _batch(offset=2.5)
    S = np.array(list(itertools.product([-1, 1], repeat=6)))
    energies = batch.energies(np.broadcast_to(S, (5, *S.shape)))
    np.testing.assert_allclose(energies.mean(axis=1), batch.offset)


def test_audited_solvers_log_their_gaps(abl):
    from qsgd.samplers import solve_batch
    from qsgd.testing import brute_force_minimum

    batch = _batch()
    exact = abl.AuditedSampler(None)
    abl.LOG.reset()
    res = solve_batch(exact, batch)
    np.testing.assert_allclose(res.best_energy, brute_force_minimum(batch))
    assert abl.LOG.record()["mean_rel_gap"] == 0.0
    abl.LOG.reset()
    field = abl.AuditedSampler("field")
    res = solve_batch(field, batch)
    np.testing.assert_array_equal(res.best, np.where(batch.h <= 0, 1, -1))
    rec = abl.LOG.record()
    assert rec["problems"] == 5 and rec["mean_rel_gap"] > 0  # couplings matter here
    abl.LOG.reset()
    solve_batch(abl.AuditedSampler("batched"), batch, num_reads=1, num_sweeps=1, seed=0)
    assert abl.LOG.record()["problems"] == 5


@pytest.mark.slow
def test_ablation_smoke_writes_its_table(abl, tmp_path, capsys):
    abl.main(["--smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "ablation_exact.json").read_text())
    assert [s["name"] for s in data["settings"]] == ["searched", "curvature=30"]
    for st in data["settings"]:
        assert list(st["arms"]) == ["exact", "batched_s1", "field"]
        exact = st["arms"]["exact"]["runs"][0]["gap"]
        assert exact["mean_rel_gap"] == 0.0 and exact["fraction_optimal"] == 1.0
        assert exact["problems"] > 0
        assert {p["arm"] for p in st["paired"]} == {"batched_s1", "field"}
    for suffix in ("md", "png"):
        assert (tmp_path / f"ablation_exact.{suffix}").stat().st_size > 0
    # the same command again: refused before any training, every file left byte for byte
    files = {p: p.read_bytes() for p in tmp_path.glob("ablation_exact.*")}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        abl.main(["--smoke", "--out", str(tmp_path)])
    assert exc.value.code == 2
    json_path = tmp_path / "ablation_exact.json"
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {json_path} already exists; pass --overwrite to replace it"
    ]
    assert {p: p.read_bytes() for p in tmp_path.glob("ablation_exact.*")} == files
    # with --overwrite it replaces them (a stale JSON put there first)
    json_path.write_text("stale\n")
    abl.main(["--smoke", "--out", str(tmp_path), "--overwrite"])
    again = json.loads(json_path.read_text())
    assert again["extra"]["command"].endswith(" --overwrite")
    assert [s["name"] for s in again["settings"]] == ["searched", "curvature=30"]


def test_ablation_writes_under_runs_by_default(abl, monkeypatch):
    seen = []

    def check(out, stems, overwrite):
        seen.append((out, list(stems), overwrite))
        raise SystemExit(0)

    monkeypatch.setattr(abl, "check_outputs", check)
    with pytest.raises(SystemExit):
        abl.main(["--smoke"])
    assert seen == [("runs/ablation_exact", ["ablation_exact"], False)]
