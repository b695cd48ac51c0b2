"""Tests of the QUBO builders in qsgd.qubo: exact energies, brute-force optima, limit cases."""

from __future__ import annotations

import itertools

import dimod
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qsgd.errors import ProblemError, ProblemTooLargeError
from qsgd.qubo import (
    brute_force,
    from_bqm,
    layer_ising,
    quadratic_model_ising,
    restrict_to_block,
    sign_match_decode,
    sign_match_ising,
    sign_match_num_variables,
    sign_match_slack_bits,
    solve_blockwise,
    split_blocks,
    to_bqm,
)

HYP = settings(max_examples=25, deadline=None, derandomize=True)


def all_spins(n: int) -> np.ndarray:
    """Every ±1 vector of length n, shape (2^n, n), in itertools order."""
    return np.array(list(itertools.product([-1, 1], repeat=n)), dtype=np.float64)


def random_spins(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=shape)


def gauss_newton(X: np.ndarray, curvature: float, normalize: bool) -> np.ndarray:
    """Independent H = curvature * mean_b f_b f_b^T, with per-column rms normalisation."""
    F = X.copy()
    if normalize:
        for i in range(F.shape[1]):
            rms = np.sqrt(np.mean(F[:, i] ** 2))
            F[:, i] = F[:, i] / rms if rms > 0 else 0.0
    return curvature * sum(np.outer(f, f) for f in F) / X.shape[0]


# --------------------------------------------------------------------------- quadratic model


@HYP
@given(
    n=st.integers(1, 6),
    m=st.integers(1, 3),
    eta=st.floats(1e-3, 10.0),
    seed=st.integers(0, 2**16),
)
def test_quadratic_model_energy_equals_model(n, m, eta, seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(m, n))
    H = rng.normal(size=(n, n))  # deliberately not symmetric
    batch = quadratic_model_ising(g, H, eta)
    d = random_spins(rng, (m, n))
    model = -eta * np.einsum("mn,mn->m", g, d) + 0.5 * eta**2 * np.einsum("mi,ij,mj->m", d, H, d)
    np.testing.assert_allclose(batch.energies(d), model, rtol=1e-10, atol=1e-10)


def test_quadratic_model_one_dimensional_g_is_one_problem():
    batch = quadratic_model_ising(np.array([1.0, -1.0, 2.0]), np.eye(3), 0.5)
    assert batch.h.shape == (1, 3)
    np.testing.assert_array_equal(batch.J, 0.0)
    np.testing.assert_allclose(batch.offset, [0.5 * 0.25 * 3])


def test_quadratic_model_brute_force_optimum_matches_model():
    rng = np.random.default_rng(1)
    n, m, eta = 7, 4, 0.7
    g = rng.normal(size=(m, n))
    A = rng.normal(size=(n, n))
    H = A @ A.T
    spins, energies = brute_force(quadratic_model_ising(g, H, eta))
    D = all_spins(n)
    model = -eta * g @ D.T + 0.5 * eta**2 * np.einsum("ci,ij,cj->c", D, H, D)[None, :]
    np.testing.assert_allclose(energies, model.min(axis=1), rtol=1e-10)
    for k in range(m):
        best = D[np.argmin(model[k])]
        np.testing.assert_array_equal(spins[k], best)


# --------------------------------------------------------------------------- limit cases


def test_diagonal_curvature_gives_sign_of_gradient_for_any_eta():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(3, 6))
    H = np.diag(rng.uniform(0.1, 5.0, size=6))
    for eta in (1e-3, 1.0, 100.0):
        spins, _ = brute_force(quadratic_model_ising(g, H, eta))
        np.testing.assert_array_equal(spins, np.sign(g))


def test_small_eta_gives_sign_of_gradient_below_the_documented_bound():
    rng = np.random.default_rng(3)
    n = 8
    g = rng.normal(size=(5, n))
    A = rng.normal(size=(n, n))
    H = A @ A.T
    off = np.abs(H - np.diag(np.diag(H))).sum(axis=1)
    bound = (np.abs(g) / off).min()  # eta < min_i |g_i| / sum_{j!=i} |H_ij|  =>  d = sign(g)
    spins, _ = brute_force(quadratic_model_ising(g, H, 0.99 * bound))
    np.testing.assert_array_equal(spins, np.sign(g))
    # far above the bound the curvature matters: some problem leaves sign(g)
    spins_big, _ = brute_force(quadratic_model_ising(g, H, 1000 * bound))
    assert np.any(spins_big != np.sign(g))


def test_layer_with_orthogonal_inputs_is_sign_sgd():
    rng = np.random.default_rng(4)
    Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    X = Q[:, :5] * rng.uniform(0.5, 2.0, size=5)  # orthogonal columns -> diagonal X^T X
    G = rng.normal(size=(8, 3))
    batch = layer_ising(X, G, eta=3.0)
    np.testing.assert_allclose(batch.J, 0.0, atol=1e-12)
    spins, _ = brute_force(batch)
    np.testing.assert_array_equal(spins, np.sign(G.T @ X))


def test_layer_with_zero_curvature_is_sign_sgd():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4, 6))
    G = rng.normal(size=(4, 3))
    batch = layer_ising(X, G, eta=1.0, curvature=0.0)
    np.testing.assert_array_equal(batch.J, 0.0)
    spins, _ = brute_force(batch)
    np.testing.assert_array_equal(spins, np.sign(G.T @ X))


def test_projected_with_orthogonal_inputs_rounds_the_sgd_step():
    rng = np.random.default_rng(6)
    Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    X = Q[:, :5] * 2.0
    G = rng.normal(size=(8, 3))
    W = random_spins(rng, (3, 5))
    eta = 0.8
    spins, _ = brute_force(layer_ising(X, G, eta=eta, formulation="projected", weights=W))
    np.testing.assert_array_equal(spins, np.sign(W - eta * G.T @ X))


# --------------------------------------------------------------------------- layer problems


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("curvature", [0.3, 1.0])
def test_binary_gradient_layer_energies_equal_the_quadratic_model(normalize, curvature):
    rng = np.random.default_rng(7)
    B, n, m, eta = 5, 6, 4, 0.4
    X = rng.normal(size=(B, n))
    X[:, 2] = 0.0  # a dead input column stays harmless under normalisation
    G = rng.normal(size=(B, m))
    # the gradient is dL/dW of the layer, computed by torch autograd
    W = torch.zeros(m, n, requires_grad=True, dtype=torch.float64)
    (torch.from_numpy(X) @ W.T * torch.from_numpy(G)).sum().backward()
    grad = W.grad.numpy()
    H = gauss_newton(X, curvature, normalize)
    batch = layer_ising(X, G, eta=eta, curvature=curvature, normalize=normalize)
    d = random_spins(rng, (m, n))
    model = -eta * np.einsum("mn,mn->m", grad, d) + 0.5 * eta**2 * np.einsum("mi,ij,mj->m", d, H, d)
    np.testing.assert_allclose(batch.energies(d), model, rtol=1e-10, atol=1e-12)
    ref = quadratic_model_ising(grad, H, eta)
    np.testing.assert_allclose(batch.h, ref.h, atol=1e-12)
    np.testing.assert_allclose(batch.J, ref.J, atol=1e-12)
    np.testing.assert_allclose(batch.offset, ref.offset, atol=1e-12)


def test_normalized_curvature_has_curvature_on_the_diagonal():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(6, 4)) * np.array([1.0, 10.0, 0.1, 3.0])
    batch = layer_ising(X, rng.normal(size=(6, 2)), eta=1.0, curvature=2.5, normalize=True)
    H = batch.factor_scale * batch.factor.T @ batch.factor
    np.testing.assert_allclose(np.diag(H), 2.5)


def test_curvature_does_not_scale_with_batch_size():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(4, 5))
    G = rng.normal(size=(4, 2))
    one = layer_ising(X, G, eta=1.0)
    twice = layer_ising(np.vstack([X, X]), np.vstack([G, G]), eta=1.0)
    np.testing.assert_allclose(twice.J, one.J, atol=1e-12)


def test_binary_gradient_brute_force_optimum_equals_model_optimum():
    rng = np.random.default_rng(10)
    B, n, m, eta = 3, 8, 3, 0.5
    X = random_spins(rng, (B, n))
    G = rng.normal(size=(B, m))
    spins, energies = brute_force(layer_ising(X, G, eta=eta))
    grad = G.T @ X
    H = X.T @ X / B
    D = all_spins(n)
    model = -eta * grad @ D.T + 0.5 * eta**2 * np.einsum("ci,ij,cj->c", D, H, D)[None, :]
    np.testing.assert_allclose(energies, model.min(axis=1), rtol=1e-10)
    picked = -eta * np.einsum("mn,mn->m", grad, spins) + 0.5 * eta**2 * np.einsum(
        "mi,ij,mj->m", spins, H, spins
    )
    np.testing.assert_allclose(picked, model.min(axis=1), rtol=1e-10)


@pytest.mark.parametrize("normalize", [False, True])
def test_projected_energies_equal_projection_objective(normalize):
    rng = np.random.default_rng(11)
    B, n, m, eta, c = 4, 6, 3, 0.3, 1.7
    X = rng.normal(size=(B, n))
    G = rng.normal(size=(B, m))
    W = random_spins(rng, (m, n))
    batch = layer_ising(
        X, G, eta=eta, curvature=c, normalize=normalize, formulation="projected", weights=W
    )
    v = W - eta * G.T @ X
    F = X / np.sqrt((X**2).mean(axis=0)) if normalize else X
    for _ in range(5):
        b = random_spins(rng, (m, n))
        objective = c / (2 * B) * np.sum((F @ (b - v).T) ** 2, axis=0)
        np.testing.assert_allclose(batch.energies(b), objective, rtol=1e-10, atol=1e-12)


def test_projected_brute_force_optimum_equals_projection_optimum():
    rng = np.random.default_rng(12)
    B, n, m, eta = 10, 7, 3, 0.2  # B > n: the data metric is non-degenerate
    X = rng.normal(size=(B, n))
    G = rng.normal(size=(B, m))
    W = random_spins(rng, (m, n))
    spins, energies = brute_force(layer_ising(X, G, eta=eta, formulation="projected", weights=W))
    v = W - eta * G.T @ X
    D = all_spins(n)
    for j in range(m):
        obj = np.sum((X @ (D - v[j]).T) ** 2, axis=0) / (2 * B)
        np.testing.assert_allclose(energies[j], obj.min(), rtol=1e-10)
        np.testing.assert_array_equal(spins[j], D[np.argmin(obj)])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(normalize=True, curvature=0.5),
        dict(formulation="projected"),
        dict(formulation="projected", normalize=True),
    ],
)
def test_layer_factor_reproduces_couplings(kwargs):
    rng = np.random.default_rng(13)
    X = rng.normal(size=(5, 9))
    G = rng.normal(size=(5, 4))
    W = random_spins(rng, (4, 9))
    batch = layer_ising(X, G, eta=0.6, weights=W, **kwargs)
    F = batch.factor
    assert F.shape == (5, 9)
    JF = batch.factor_scale * F.T @ F
    np.fill_diagonal(JF, 0.0)
    np.testing.assert_allclose(batch.J, JF, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(np.diag(batch.J), 0.0)
    np.testing.assert_array_equal(batch.J, batch.J.T)
    # u = F s gives the same energy
    s = random_spins(rng, (4, 9))
    u = s @ F.T
    quad = 0.5 * batch.factor_scale * ((u**2).sum(axis=1) - (F**2).sum())
    lin = np.einsum("mn,mn->m", batch.h, s)
    np.testing.assert_allclose(lin + quad + batch.offset, batch.energies(s), rtol=1e-10)


def test_layer_accepts_torch_tensors():
    rng = np.random.default_rng(14)
    X = rng.normal(size=(3, 4))
    G = rng.normal(size=(3, 2))
    a = layer_ising(torch.from_numpy(X).requires_grad_(), torch.from_numpy(G), eta=0.1)
    b = layer_ising(X, G, eta=0.1)
    np.testing.assert_array_equal(a.h, b.h)
    np.testing.assert_array_equal(a.J, b.J)


# --------------------------------------------------------------------------- sign matching


def mismatch_cost(X, G, D, weighted=True):
    """Independent weighted count of sign mismatches, sign(0) = +1 and target +1 where G == 0."""
    z = X @ D.T
    t = np.where(G < 0, -1, 1)
    w = np.abs(G) / np.abs(G).max() if weighted else (G != 0).astype(float)
    return float((w * (np.where(z >= 0, 1, -1) != t)).sum())


def enumerate_over_directions(batch, X, G, fan_out, weighted=True):
    """For every D: (min over ancillas of the energy, independent mismatch cost)."""
    fan_in = X.shape[1]
    nd = fan_in * fan_out
    anc = np.arange(nd, batch.num_variables)
    D_all = all_spins(nd)
    full = np.ones((D_all.shape[0], batch.num_variables))
    full[:, :nd] = D_all
    mins, costs = [], []
    for row in full:
        _, e = brute_force(restrict_to_block(batch, row[None, :], anc))
        mins.append(e[0])
        costs.append(mismatch_cost(X, G, row[:nd].reshape(fan_out, fan_in), weighted))
    return np.array(mins), np.array(costs)


@pytest.mark.parametrize("fan_in", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["spin", "bool"])
def test_sign_match_min_over_ancillas_is_the_mismatch_cost(fan_in, kind):
    rng = np.random.default_rng(100 + fan_in)
    B, fan_out = 2, 1
    if kind == "spin":
        X = random_spins(rng, (B, fan_in))
    else:
        X = rng.integers(0, 2, size=(B, fan_in)).astype(float)
    G = rng.normal(size=(B, fan_out))
    batch = sign_match_ising(X, G)
    assert batch.num_variables == sign_match_num_variables(B, fan_in, fan_out)
    mins, costs = enumerate_over_directions(batch, X, G, fan_out)
    np.testing.assert_allclose(mins, costs, atol=1e-9)


def test_sign_match_integer_inputs_unweighted_and_ties():
    X = np.array([[2.0, -1.0], [0.0, 3.0]])
    G = np.array([[0.5, 0.0], [-2.0, 1.0]])  # a zero gradient: target +1 with weight 0
    batch = sign_match_ising(X, G, weighted=False, penalty=1.0)
    assert batch.num_variables == sign_match_num_variables(2, 2, 2, input_bound=3)
    mins, costs = enumerate_over_directions(batch, X, G, 2, weighted=False)
    np.testing.assert_allclose(mins, costs, atol=1e-9)


def test_sign_match_global_optimum_is_the_best_direction():
    rng = np.random.default_rng(15)
    B, fan_in, fan_out = 2, 2, 1
    X = random_spins(rng, (B, fan_in))
    G = np.array([[1.0], [-0.4]])
    batch = sign_match_ising(X, G)
    assert batch.num_variables <= 16
    spins, energies = brute_force(batch)
    D = sign_match_decode(spins[0], fan_in, fan_out)
    best = min(mismatch_cost(X, G, d.reshape(fan_out, fan_in)) for d in all_spins(fan_in * fan_out))
    assert energies[0] == pytest.approx(best, abs=1e-9)
    assert mismatch_cost(X, G, D) == pytest.approx(best, abs=1e-9)


def test_sign_match_factor_and_counts():
    rng = np.random.default_rng(16)
    X = random_spins(rng, (3, 4))
    G = rng.normal(size=(3, 2))
    batch = sign_match_ising(X, G, penalty=3.0)
    K = sign_match_slack_bits(4)
    assert K == 4  # slack range 0..8
    assert batch.num_variables == 2 * (4 + 3 * (1 + K)) == sign_match_num_variables(3, 4, 2)
    assert batch.factor.shape == (3 * 2, batch.num_variables)
    JF = batch.factor_scale * batch.factor.T @ batch.factor
    np.fill_diagonal(JF, 0.0)
    np.testing.assert_allclose(batch.J, JF, atol=1e-12)
    assert sign_match_num_variables(16, 128, 128) == 128 * (128 + 16 * (1 + 9))


def test_sign_match_resolution_rounds_real_inputs():
    X = np.array([[0.49, -1.02], [1.51, 0.0]])
    G = np.array([[1.0], [-1.0]])
    a = sign_match_ising(X, G, resolution=0.5)
    b = sign_match_ising(np.round(X / 0.5), G)
    np.testing.assert_array_equal(a.h, b.h)
    np.testing.assert_array_equal(a.J, b.J)


# --------------------------------------------------------------------------- blocks


def test_split_blocks_contiguous_and_random():
    blocks = split_blocks(10, 4)
    assert [b.tolist() for b in blocks] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    r1 = split_blocks(10, 4, rng=0)
    r2 = split_blocks(10, 4, rng=0)
    assert [b.tolist() for b in r1] == [b.tolist() for b in r2]
    assert sorted(np.concatenate(r1).tolist()) == list(range(10))
    assert max(len(b) for b in r1) <= 4
    assert [b.tolist() for b in r1] != [b.tolist() for b in blocks]
    assert [b.tolist() for b in split_blocks(3, 8)] == [[0, 1, 2]]


@HYP
@given(seed=st.integers(0, 2**16), n=st.integers(2, 9), m=st.integers(1, 3))
def test_restrict_to_block_energies_equal_full_energies(seed, n, m):
    rng = np.random.default_rng(seed)
    batch = layer_ising(rng.normal(size=(3, n)), rng.normal(size=(3, m)), eta=0.9)
    spins = random_spins(rng, (m, n))
    block = np.sort(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False))
    sub = restrict_to_block(batch, spins, block)
    x = random_spins(rng, (m, block.size))
    full = spins.copy()
    full[:, block] = x
    np.testing.assert_allclose(sub.energies(x), batch.energies(full), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sub.energies(spins[:, block]), batch.energies(spins), atol=1e-10)
    JF = sub.factor_scale * sub.factor.T @ sub.factor
    np.fill_diagonal(JF, 0.0)
    np.testing.assert_allclose(sub.J, JF, atol=1e-12)


def test_solve_blockwise_never_increases_energy_even_with_a_random_solver():
    rng = np.random.default_rng(17)
    X = rng.normal(size=(6, 12))
    batch = layer_ising(X, rng.normal(size=(6, 5)), eta=2.0)
    initial = random_spins(rng, (5, 12))
    e0 = batch.energies(initial)
    solver_rng = np.random.default_rng(0)

    def random_solver(sub):
        return random_spins(solver_rng, (sub.num_problems, sub.num_variables))

    spins, energies = solve_blockwise(batch, random_solver, 4, initial, sweeps=3, rng=1)
    assert spins.dtype == np.int8 and spins.shape == (5, 12)
    assert np.all(energies <= e0 + 1e-12)
    np.testing.assert_allclose(energies, batch.energies(spins))


def test_solve_blockwise_with_exact_blocks_descends_and_one_block_is_exact():
    rng = np.random.default_rng(18)
    batch = layer_ising(rng.normal(size=(4, 10)), rng.normal(size=(4, 3)), eta=1.5)
    initial = np.sign(-batch.h)
    history = [batch.energies(initial)]
    spins = initial
    for _ in range(3):
        spins, e = solve_blockwise(batch, lambda b: brute_force(b)[0], 4, spins)
        history.append(e)
    assert all(np.all(b <= a + 1e-12) for a, b in zip(history, history[1:], strict=False))
    # each block is then optimal given the others
    for block in split_blocks(10, 4):
        _, e_block = brute_force(restrict_to_block(batch, spins, block))
        np.testing.assert_allclose(e_block, history[-1], atol=1e-10)
    _, exact = brute_force(batch)
    one, e_one = solve_blockwise(batch, lambda b: brute_force(b)[0], 10, initial)
    np.testing.assert_allclose(e_one, exact, atol=1e-10)


# --------------------------------------------------------------------------- dimod and brute force


def test_bqm_round_trip_energies_agree_with_dimod():
    rng = np.random.default_rng(19)
    batch = layer_ising(rng.normal(size=(3, 6)), rng.normal(size=(3, 2)), eta=0.8)
    spins = random_spins(rng, (7, 6)).astype(np.int8)
    for k in range(2):
        bqm = to_bqm(batch, k)
        assert bqm.vartype is dimod.SPIN
        ours = batch.problem(k).energies(spins[None, :, :])[0]
        np.testing.assert_allclose(bqm.energies((spins, list(range(6)))), ours, rtol=1e-10)
        back, labels = from_bqm(bqm)
        assert labels == list(range(6))
        np.testing.assert_allclose(back.h[0], batch.h[k])
        np.testing.assert_allclose(back.J, batch.J, atol=1e-12)
        np.testing.assert_allclose(back.offset, batch.offset[k])


def test_brute_force_agrees_with_dimod_exact_solver():
    rng = np.random.default_rng(20)
    batch = sign_match_ising(random_spins(rng, (1, 2)), rng.normal(size=(1, 1)))
    assert batch.num_variables <= 12
    spins, energies = brute_force(batch)
    ss = dimod.ExactSolver().sample(to_bqm(batch))
    assert energies[0] == pytest.approx(ss.first.energy, abs=1e-9)
    assert batch.energies(spins)[0] == pytest.approx(energies[0], abs=1e-9)


def test_brute_force_chunks_give_the_same_answer_as_one_chunk():
    rng = np.random.default_rng(21)
    n, m = 14, 40  # 2^14 configurations over several chunks
    batch = quadratic_model_ising(rng.normal(size=(m, n)), np.eye(n) + 0.3, 0.9)
    spins, energies = brute_force(batch)
    np.testing.assert_allclose(batch.energies(spins), energies, atol=1e-10)
    D = all_spins(n)
    E = batch.h @ D.T + 0.5 * np.einsum("cn,cn->c", D @ batch.J, D)[None, :] + batch.offset[:, None]
    np.testing.assert_allclose(energies, E.min(axis=1), atol=1e-10)


# --------------------------------------------------------------------------- bad input


X0 = np.ones((3, 4))
G0 = np.ones((3, 2))
W0 = np.ones((2, 4))
NAN_X = X0.copy()
NAN_X[1, 1] = np.nan
INF_G = G0.copy()
INF_G[0, 0] = np.inf


BAD = [
    # (callable, exception type, message pattern)
    (lambda: layer_ising(NAN_X, G0, eta=1.0, name="fc1"), ProblemError, r"inputs of 'fc1' contains 1 non-finite"),
    (lambda: layer_ising(X0, INF_G, eta=1.0, name="fc2"), ProblemError, r"grad_out of 'fc2' contains 1 non-finite"),
    (lambda: layer_ising(X0, INF_G, eta=1.0), ProblemError, r"grad_out contains 1 non-finite"),
    (lambda: layer_ising(X0, np.ones((5, 2)), eta=1.0), ProblemError, r"grad_out must have shape \(3, fan_out\).*got shape \(5, 2\)"),
    (lambda: layer_ising(np.ones(4), G0, eta=1.0), ProblemError, r"inputs must have shape \(batch, fan_in\) \(got shape \(4,\)"),
    (lambda: layer_ising(np.ones((0, 4)), np.ones((0, 2)), eta=1.0), ProblemError, r"inputs is empty: shape \(0, 4\)"),
    (lambda: layer_ising(X0, np.ones((3, 0)), eta=1.0), ProblemError, r"grad_out is empty"),
    (lambda: layer_ising(X0, G0, eta=0.0), ValueError, r"eta must be a finite number > 0 \(got 0.0\)"),
    (lambda: layer_ising(X0, G0, eta=-1), ValueError, r"eta must be a finite number > 0 \(got -1\)"),
    (lambda: layer_ising(X0, G0, eta=float("nan")), ValueError, r"eta must be a finite number > 0"),
    (lambda: layer_ising(X0, G0, eta=1.0, curvature=-0.5), ValueError, r"curvature must be a finite number >= 0 \(got -0.5\)"),
    (lambda: layer_ising(X0, G0, eta=1.0, formulation="newton"), ValueError, r"formulation must be one of 'binary_gradient', 'projected' \(got 'newton'\)"),
    (lambda: layer_ising(X0, G0, eta=1.0, formulation="projected"), ValueError, r"needs weights.*shape \(2, 4\)"),
    (lambda: layer_ising(X0, G0, eta=1.0, formulation="projected", weights=np.ones((4, 2))), ProblemError, r"weights must have shape \(2, 4\).*got shape \(4, 2\)"),
    (lambda: layer_ising(X0, G0, eta=1.0, formulation="projected", weights=0.5 * W0, name="fc3"), ProblemError, r"weights of 'fc3' must be exactly \+1 or -1.*8 entries"),
    (lambda: quadratic_model_ising(np.ones(3), np.eye(4), 1.0), ProblemError, r"H must have shape \(3, 3\) to match g \(got shape \(4, 4\)\)"),
    (lambda: quadratic_model_ising(np.array([1.0, np.nan]), np.eye(2), 1.0, name="x"), ProblemError, r"g of 'x' contains 1 non-finite"),
    (lambda: quadratic_model_ising(np.ones(2), np.full((2, 2), np.inf), 1.0), ProblemError, r"H contains 4 non-finite"),
    (lambda: quadratic_model_ising(np.ones((2, 0)), np.eye(0), 1.0), ProblemError, r"g is empty"),
    (lambda: quadratic_model_ising(np.ones(2), np.eye(2), 0), ValueError, r"eta must be a finite number > 0 \(got 0\)"),
    (lambda: sign_match_ising(X0 * 0.5, G0), ProblemError, r"inputs must be integer-valued.*resolution"),
    (lambda: sign_match_ising(X0, G0, penalty=0.5), ValueError, r"penalty must be >= 1.*got 0.5"),
    (lambda: sign_match_ising(np.ones((16, 64)), np.ones((16, 64))), ProblemTooLargeError, r"has \d+ spins.*max_vars=4096"),
    (lambda: sign_match_ising(X0, np.ones((2, 2))), ProblemError, r"grad_out must have shape \(3, fan_out\)"),
    (lambda: sign_match_num_variables(0, 3, 3), ValueError, r"batch must be a positive int \(got 0\)"),
    (lambda: split_blocks(5, 0), ValueError, r"max_block_vars must be a positive int \(got 0\)"),
    (lambda: split_blocks(0, 3), ValueError, r"n must be a positive int \(got 0\)"),
    (lambda: brute_force(quadratic_model_ising(np.ones(23), np.eye(23), 1.0)), ProblemTooLargeError, r"n=23 variables exceeds max_vars=22"),
    (lambda: brute_force(quadratic_model_ising(np.ones(5), np.eye(5), 1.0), max_vars=4), ProblemTooLargeError, r"n=5 variables exceeds max_vars=4"),
    (lambda: restrict_to_block(layer_ising(X0, G0, eta=1.0), np.ones((2, 3)), [0]), ProblemError, r"spins must have shape \(2, 4\) \(got shape \(2, 3\)\)"),
    (lambda: restrict_to_block(layer_ising(X0, G0, eta=1.0), np.ones((2, 4)), [0, 4]), ProblemError, r"distinct indices in \[0, 4\)"),
    (lambda: solve_blockwise(layer_ising(X0, G0, eta=1.0), lambda b: b.h, 2, np.ones(4), sweeps=0), ValueError, r"sweeps must be a positive int \(got 0\)"),
    (lambda: solve_blockwise(layer_ising(X0, G0, eta=1.0), lambda b: b.h, 2, np.zeros(4)), ProblemError, r"initial must hold spins that are exactly"),
    (lambda: solve_blockwise(layer_ising(X0, G0, eta=1.0), lambda b: np.ones(3), 2, np.ones(4)), ProblemError, r"solve must return spins of shape \(2, 2\)"),
]  # fmt: skip


@pytest.mark.parametrize("call, exc, pattern", BAD)
def test_bad_input_is_rejected_with_a_clear_message(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_bad_input_errors_subclass_value_error():
    assert issubclass(ProblemError, ValueError)
    assert issubclass(ProblemTooLargeError, ValueError)


@HYP
@given(X=hnp.arrays(np.float64, (3, 4), elements=st.floats(-5, 5)))
def test_any_finite_inputs_build_a_valid_problem(X):
    batch = layer_ising(X, np.ones((3, 2)), eta=0.5, normalize=True)
    assert np.all(np.isfinite(batch.J)) and np.all(np.isfinite(batch.h))
    np.testing.assert_array_equal(np.diag(batch.J), 0.0)


# --------------------------------------------------------------------------- damping


def _damped_projection(X, v, c, lam_rel):
    """Brute-force values of 0.5 (b - v)^T (H + lam I) (b - v) over all b, lam relative."""
    B, n = X.shape
    H = c * X.T @ X / B
    lam = lam_rel * np.trace(H) / n
    D = all_spins(n)
    diff = D[None, :, :] - v[:, None, :]  # (m, 2^n, n)
    return 0.5 * np.einsum("mci,ij,mcj->mc", diff, H + lam * np.eye(n), diff), D


@pytest.mark.parametrize("damping", [0.0, 0.3, 5.0])
def test_projected_damping_energies_and_optimum_equal_damped_objective(damping):
    rng = np.random.default_rng(21)
    B, n, m, eta, c = 3, 8, 4, 0.4, 1.3  # B < n: undamped metric is rank-deficient
    X = rng.normal(size=(B, n))  # real inputs: no exact ties between configurations
    G = rng.normal(size=(B, m))
    W = random_spins(rng, (m, n))
    batch = layer_ising(
        X, G, eta=eta, curvature=c, formulation="projected", weights=W, damping=damping
    )
    v = W - eta * G.T @ X
    obj, D = _damped_projection(X, v, c, damping)
    # every configuration's energy equals the damped objective exactly
    np.testing.assert_allclose(batch.energies(np.broadcast_to(D, (m,) + D.shape)), obj, rtol=1e-10)
    spins, energies = brute_force(batch)
    np.testing.assert_allclose(energies, obj.min(axis=1), rtol=1e-10)
    if damping > 0:  # positive definite metric, generic data: a unique optimum
        np.testing.assert_array_equal(spins, D[np.argmin(obj, axis=1)])


def test_projected_damping_limits():
    rng = np.random.default_rng(22)
    B, n, m, eta = 4, 10, 5, 0.7
    X = rng.normal(size=(B, n))
    G = rng.normal(size=(B, m))
    W = random_spins(rng, (m, n))
    v = W - eta * G.T @ X
    kw = dict(eta=eta, formulation="projected", weights=W)
    plain = layer_ising(X, G, **kw)
    zero = layer_ising(X, G, damping=0.0, **kw)
    for a in ("h", "J", "offset", "factor"):
        np.testing.assert_array_equal(getattr(zero, a), getattr(plain, a))
    # lambda -> inf: b = sign(v) (SGD step on the binary weights, then sign)
    big, _ = brute_force(layer_ising(X, G, damping=1e6, **kw))
    np.testing.assert_array_equal(big, np.sign(v).astype(np.int8))
    # and the undamped rank-deficient projection does not give sign(v) here
    undamped, _ = brute_force(plain)
    assert not np.array_equal(undamped, np.sign(v).astype(np.int8))
    # curvature 0: damping is absolute (H == 0), and the answer is sign(v) for any damping > 0
    flat, _ = brute_force(layer_ising(X, G, curvature=0.0, damping=0.1, **kw))
    np.testing.assert_array_equal(flat, np.sign(v).astype(np.int8))


def test_damping_is_relative_to_the_curvature_scale():
    rng = np.random.default_rng(23)
    X = rng.normal(size=(4, 7))
    G = rng.normal(size=(4, 3))
    W = random_spins(rng, (3, 7))
    kw = dict(eta=0.5, formulation="projected", weights=W, damping=2.0)
    a = layer_ising(X, G, curvature=1.0, **kw)
    b = layer_ising(X, G, curvature=40.0, **kw)
    # scaling H scales the whole damped problem: same minimiser for every curvature
    for attr in ("h", "J", "offset"):
        np.testing.assert_allclose(40.0 * getattr(a, attr), getattr(b, attr), rtol=1e-12)


def test_binary_gradient_damping_only_shifts_the_energy():
    rng = np.random.default_rng(24)
    B, n, m, eta, c, dmp = 3, 6, 2, 0.2, 0.9, 4.0
    X = rng.normal(size=(B, n))
    G = rng.normal(size=(B, m))
    plain = layer_ising(X, G, eta=eta, curvature=c)
    damped = layer_ising(X, G, eta=eta, curvature=c, damping=dmp)
    np.testing.assert_array_equal(damped.h, plain.h)
    np.testing.assert_array_equal(damped.J, plain.J)
    H = c * X.T @ X / B
    lam = dmp * np.trace(H) / n
    D = all_spins(n)
    grad = G.T @ X
    model = (
        -eta * grad @ D.T
        + 0.5 * eta**2 * np.einsum("ci,ij,cj->c", D, H + lam * np.eye(n), D)[None, :]
    )
    np.testing.assert_allclose(
        damped.energies(np.broadcast_to(D, (m,) + D.shape)), model, rtol=1e-10
    )
    np.testing.assert_array_equal(brute_force(damped)[0], brute_force(plain)[0])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "x"])
def test_damping_rejects_bad_values(bad):
    X0 = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"damping must be"):
        layer_ising(X0, np.ones((3, 2)), eta=1.0, damping=bad)
