"""The comparisons of every kernel run: tuned bandwidth, tuned RBF, same splits, paired gaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC

from qkernels.ansatz import get_ansatz
from qkernels.config import ExperimentConfig
from qkernels.datasets import load_dataset
from qkernels.experiment import (
    METHODS,
    _search_bandwidth,
    _tuned_rbf,
    bandwidth_candidates,
    grid_search,
    run_one,
    summarize,
)
from qkernels.kernel import EmbeddingKernel


def test_grid_search_interior_best_needs_no_extension():
    best, info = grid_search(lambda v: (-abs(np.log(v) - np.log(0.3)),), np.geomspace(0.01, 10, 7))
    assert info["extensions"] == 0 and not info["on_edge"] and info["candidates"] == 7
    assert best == pytest.approx(min(info["grid"], key=lambda v: abs(np.log(v / 0.3))))


def test_grid_search_extends_past_an_edge_until_interior_or_limit():
    # optimum at 1000, grid ends at 10: extended upwards twice (ratio 10**0.5, 3 points each)
    best, info = grid_search(lambda v: (-abs(np.log10(v) - 3.0),), np.geomspace(0.01, 10, 7))
    assert info["extensions"] == 2 and not info["on_edge"] and info["candidates"] == 13
    assert best == pytest.approx(1000.0)
    # optimum far below: stops after two extensions, still on the edge, and says so
    best, info = grid_search(lambda v: (-v,), np.geomspace(1.0, 100.0, 3), max_extensions=2)
    assert info["extensions"] == 2 and info["on_edge"]
    assert best == pytest.approx(min(info["grid"])) and best < 1.0
    # ties go to the smaller value
    best, _ = grid_search(lambda v: (1.0,), np.geomspace(1.0, 8.0, 4), max_extensions=0)
    assert best == 1.0


def _folds(ds, k=3, seed=0):
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(ds.X_train, ds.y_train))


def test_tuned_rbf_matches_sklearn_grid_search_on_the_same_folds():
    ds = load_dataset("moons", n_train=40, n_test=30, seed=1)
    folds = _folds(ds)
    info, K, K_test = _tuned_rbf(ds, 1.0, 9, folds)
    gamma0 = 1.0 / (ds.X_train.shape[1] * ds.X_train.var())
    grid = sorted(info["grid"])
    ref = GridSearchCV(SVC(kernel="rbf", C=1.0), {"gamma": grid}, cv=folds).fit(
        ds.X_train, ds.y_train
    )
    best_score = ref.best_score_
    # same best score; among ties ours takes the smallest gamma
    tied = [
        g for g, s in zip(grid, ref.cv_results_["mean_test_score"], strict=True) if s == best_score
    ]
    assert info["cv_accuracy"] == pytest.approx(best_score)
    assert info["gamma"] == pytest.approx(min(tied))
    assert min(info["grid"]) <= gamma0 * 1e-2 * 1.0001
    # the precomputed Gram reproduces sklearn's own rbf SVC
    direct = SVC(kernel="rbf", gamma=info["gamma"], C=1.0).fit(ds.X_train, ds.y_train)
    pre = SVC(kernel="precomputed", C=1.0).fit(K, ds.y_train)
    assert np.array_equal(direct.predict(ds.X_test), pre.predict(K_test))


def test_bandwidth_search_maximises_cv_accuracy_and_restores_the_kernel():
    ds = load_dataset("checkerboard", n_train=24, n_test=12, seed=0)
    kern = EmbeddingKernel(get_ansatz("hubregtsen", 3, 2, n_features=2), bandwidth=0.7, seed=0)
    folds = _folds(ds)
    grid = np.geomspace(0.1, 3.0, 5)
    res = _search_bandwidth(kern, ds, 1.0, grid, folds)
    assert float(kern.bandwidth) == 0.7
    # independent recomputation of each candidate's CV accuracy
    for bw, (cv, _) in zip(res["grid"], res["scores"], strict=True):
        k2 = EmbeddingKernel(get_ansatz("hubregtsen", 3, 2, n_features=2), bandwidth=bw, seed=0)
        with torch.no_grad():
            K = k2.gram(ds.X_train).numpy()
        accs = []
        for tr, te in folds:
            svc = SVC(kernel="precomputed", C=1.0).fit(K[np.ix_(tr, tr)], ds.y_train[tr])
            accs.append((svc.predict(K[np.ix_(te, tr)]) == ds.y_train[te]).mean())
        assert cv == pytest.approx(np.mean(accs))
    assert res["cv_accuracy"] == max(s[0] for s in res["scores"])


def test_budget_of_the_bandwidth_search_equals_trainings_simulated_states():
    cfg = ExperimentConfig.from_dict(
        {
            "datasets": [{"name": "moons", "n_train": 40}],
            "ansatze": [{"name": "hubregtsen", "n_wires": 2}],
            "training": {"steps": 100, "batch_size": 8},
        }
    )
    assert len(bandwidth_candidates(cfg, 40)) == 20  # 100 steps x 8 states / 40 states
    cfg2 = ExperimentConfig.from_dict({**cfg.model_dump(), "training": {"steps": 1}})
    assert len(bandwidth_candidates(cfg2, 40)) == 4


def test_run_one_scores_four_kernels_on_one_split_and_pairs_them():
    cfg = ExperimentConfig.from_dict(
        {
            "seeds": [0, 1],
            "datasets": [{"name": "moons", "n_train": 16, "n_test": 12}],
            "ansatze": [{"name": "hubregtsen", "n_wires": 2, "n_layers": 1}],
            "training": {"steps": 4, "batch_size": 4},
            "baselines": {"bandwidth_candidates": 3, "rbf_candidates": 3, "cv_folds": 2},
            "plots": False,
        }
    )
    runs = [run_one(cfg, cfg.datasets[0], cfg.ansatze[0], seed) for seed in cfg.seeds]
    for r in runs:
        assert list(r["methods"]) == list(METHODS)
        assert r["methods"]["untrained"] is r["before"] and r["methods"]["trained"] is r["after"]
        for m in r["methods"].values():
            assert 0.0 <= m["accuracy"]["test"] <= 1.0
            assert m["generalization_bound"] > 0 and 0 < m["task_model_alignment"] <= 1
    (summary,) = summarize(runs)
    diffs = [
        r["after"]["accuracy"]["test"] - r["methods"]["rbf_tuned"]["accuracy"]["test"] for r in runs
    ]
    assert summary["trained_minus_rbf_tuned"]["mean"] == pytest.approx(np.mean(diffs))
    assert summary["methods"]["untrained_tuned_bandwidth"]["chosen_on_grid_edge"] in (0, 1, 2)
