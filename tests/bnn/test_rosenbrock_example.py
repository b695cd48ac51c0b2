"""examples/rosenbrock.py: the second-order binary-step baselines and the fair search."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rosenbrock.py"


@pytest.fixture(scope="module")
def rb():
    spec = importlib.util.spec_from_file_location("_example_rosenbrock", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _vertices(n: int) -> np.ndarray:
    return np.array(list(itertools.product([-1.0, 1.0], repeat=n)))


def test_projected_newton_is_the_binary_step_nearest_the_newton_point(rb):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (6, 4))
    g, H = rb.rosenbrock_grad(x), rb.rosenbrock_hessian(x)
    d = rb.projected_newton_direction(g, H, 0.1, 0)
    V = _vertices(4)
    for i in range(6):
        newton_point = x[i] - np.linalg.solve(H[i], g[i])
        for eta in (0.01, 0.1, 1.0):  # the nearest vertex does not depend on the step size
            dist = np.linalg.norm(x[i] - eta * V - newton_point, axis=1)
            np.testing.assert_array_equal(d[i], V[np.argmin(dist)])


def test_saddle_free_step_uses_absolute_eigenvalues(rb):
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, (5, 3))
    g, H = rb.rosenbrock_grad(x), rb.rosenbrock_hessian(x)
    assert any(np.linalg.eigvalsh(h).min() < 0 for h in H)  # indefinite cases are covered
    for i in range(5):
        w, V = np.linalg.eigh(H[i])
        absH = V @ np.diag(np.abs(w)) @ V.T
        np.testing.assert_allclose(
            rb.abs_hessian_solve(g[i : i + 1], H[i : i + 1])[0], np.linalg.solve(absH, g[i])
        )
        # a descent direction wherever |H| is positive definite
        assert g[i] @ rb.abs_hessian_solve(g[i : i + 1], H[i : i + 1])[0] > 0
    # where H is positive definite the two second-order sign steps agree
    pd = np.array([[[4.0, 1.0], [1.0, 3.0]]])
    gg = np.array([[1.0, -2.0]])
    np.testing.assert_array_equal(
        rb.saddle_free_sign_direction(gg, pd, 0.1, 0), rb.projected_newton_direction(gg, pd, 0.1, 0)
    )


def test_qpsbgd_is_the_projection_in_the_metric_h(rb):
    from qsgd.config import AnnealerConfig

    H = np.array([[[4.0, 1.5, 0.0], [1.5, 3.0, -1.0], [0.0, -1.0, 2.0]]])  # positive definite
    g = np.array([[0.31, -0.17, 0.53]])  # no two vertices tie
    V = _vertices(3)
    p = np.linalg.solve(H[0], g[0])
    for eta in (0.05, 0.2, 1.0):
        d = rb.qpsbgd_direction(AnnealerConfig(backend="exact", num_reads=1), 0)(g, H, eta, 0)[0]
        r = eta * V - p
        metric = np.einsum("vi,ij,vj->v", r, H[0], r)
        np.testing.assert_array_equal(d, V[np.argmin(metric)])


def test_search_extends_the_grid_at_an_edge_and_stops_inside(rb):
    calls = []

    def make_dir(seed):
        def direction(g, H, eta, step):
            calls.append(eta)
            return np.sign(g)

        return direction

    # signSGD on n = 2 from these starts does best with a large step: the grid's top edge wins
    eta0, trials, info = rb.search_eta0(make_dir, 2, 20, [1000, 1001], [0.001, 0.003], 2)
    assert info["extensions"] and all(e["direction"] == 1 for e in info["extensions"])
    assert info["grid"][:2] == [0.001, 0.003] and len(trials) == len(info["grid"])
    assert eta0 in info["grid"]
    assert info["at_edge"] == (eta0 == info["grid"][-1])


def test_paired_differences_are_per_start_and_count_wins(rb):
    def method(fs):
        return {"runs": [{"seed": s, "final_f": f} for s, f in enumerate(fs)]}

    methods = {
        "qpsbgd_neal": method([1e-3, 1e-2, 1.0]),
        "qpsbgd_exact": method([1e-3, 1e-2, 1.0]),
        "signsgd": method([1e-2, 1e-1, 1.0]),
    }
    pairs = {(p["method"], p["baseline"]): p for p in rb.paired(methods)}
    assert set(pairs) == {
        ("qpsbgd_neal", "qpsbgd_exact"),
        ("qpsbgd_neal", "signsgd"),
        ("qpsbgd_exact", "signsgd"),
    }
    p = pairs[("qpsbgd_neal", "signsgd")]
    np.testing.assert_allclose(p["diffs"], [-1.0, -1.0, 0.0])
    assert p["wins"] == 2 and p["ties"] == 1 and p["ci"][0] <= p["mean"] <= p["ci"][1]
    assert pairs[("qpsbgd_neal", "qpsbgd_exact")]["ties"] == 3
