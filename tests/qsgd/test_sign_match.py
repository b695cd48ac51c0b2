"""The sign-matching formulation in training (qsgd.sign_match): per-neuron problems against the
joint problem of qsgd.qubo.sign_match_ising and brute force, and the QPSBGD update."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnn.models import BinaryMLP
from qsgd.errors import ProblemError, ProblemTooLargeError
from qsgd.optimizer import QPSBGD
from qsgd.qubo import brute_force, restrict_to_block, sign_match_ising, sign_match_num_variables
from qsgd.samplers.registry import get_sampler, solve_batch
from qsgd.sign_match import (
    check_sign_match_options,
    mismatch_cost,
    neuron_num_variables,
    neuron_slack_bits,
    optimal_mismatch,
    select_rows,
    sign_match_neuron_decode,
    sign_match_neuron_ising,
)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def all_spins(n: int) -> np.ndarray:
    return np.array(list(itertools.product([-1.0, 1.0], repeat=n)))


def ancilla_minima(batch, directions: np.ndarray, n_dir: int) -> np.ndarray:
    """min over the ancillas of every problem of ``batch`` for each direction row set.

    directions: ``(k, m, n_dir)`` (per-problem directions) -> ``(k, m)``.
    """
    anc = np.arange(n_dir, batch.num_variables)
    out = []
    for D in directions:
        spins = np.ones((batch.num_problems, batch.num_variables))
        spins[:, :n_dir] = D
        out.append(brute_force(restrict_to_block(batch, spins, anc), max_vars=24)[1])
    return np.array(out)


def cases():
    """Small enough that the joint problem's ancillas (B * m * (1 + K)) enumerate in a blink."""
    rng = np.random.default_rng(7)
    yield "spin", rng.choice([-1.0, 1.0], size=(2, 1)), rng.normal(size=(2, 2))
    yield "bool", rng.integers(0, 2, size=(1, 3)).astype(float), rng.normal(size=(1, 2))
    # larger integers, a zero gradient (target +1, weight 0), a zero input row
    yield "int", np.array([[2.0, -1.0], [0.0, 0.0]]), np.array([[0.0], [-2.0]])
    yield "int2", np.array([[2.0, -1.0]]), np.array([[0.5, 0.0]])


@pytest.mark.parametrize("kind,X,G", list(cases()))
def test_per_neuron_minima_add_up_to_the_joint_problem(kind, X, G):
    """For every D: sum_j min_anc E_j(D_j) == min_anc E_joint(D) == weighted mismatch count."""
    B, n = X.shape
    m = G.shape[1]
    joint = sign_match_ising(X, G)
    per = sign_match_neuron_ising(X, G, weight_scale="layer")
    assert per.num_problems == m
    assert (
        m * per.num_variables
        == joint.num_variables
        == sign_match_num_variables(B, n, m, input_bound=int(np.abs(X).sum(axis=1).max()))
    )
    Ds = all_spins(m * n).reshape(-1, m, n)
    # joint problem: its D spins are the first m*n (row-major), one problem
    joint_min = ancilla_minima(joint, Ds.reshape(-1, 1, m * n), m * n)[:, 0]
    per_min = ancilla_minima(per, Ds, n).sum(axis=1)
    cost = mismatch_cost(X, G, Ds, weight_scale="layer").sum(axis=1)
    np.testing.assert_allclose(per_min, joint_min, atol=1e-9)
    np.testing.assert_allclose(per_min, cost, atol=1e-9)
    # and per neuron, with every problem scaled on its own
    own = ancilla_minima(sign_match_neuron_ising(X, G), Ds, n)
    np.testing.assert_allclose(own, mismatch_cost(X, G, Ds), atol=1e-9)


def test_unweighted_counts_and_penalty_one():
    X = np.array([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    G = np.array([[0.3], [-2.0], [0.0]])
    batch = sign_match_neuron_ising(X, G, weighted=False, penalty=1.0)
    Ds = all_spins(2).reshape(-1, 1, 2)
    mins = ancilla_minima(batch, Ds, 2)
    np.testing.assert_allclose(mins, mismatch_cost(X, G, Ds, weighted=False), atol=1e-9)


def test_shared_couplings_factor_and_ground_state_is_the_best_direction():
    rng = np.random.default_rng(3)
    X = rng.choice([-1.0, 1.0], size=(3, 3))
    G = rng.normal(size=(3, 4))
    batch = sign_match_neuron_ising(X, G, penalty=3.0)
    K = neuron_slack_bits(3)
    assert K == 3 and batch.num_variables == 3 + 3 * (1 + K) == neuron_num_variables(3, 3)
    assert batch.J.shape == (batch.num_variables,) * 2  # one J for all 4 neurons
    JF = batch.factor_scale * batch.factor.T @ batch.factor
    np.fill_diagonal(JF, 0.0)
    np.testing.assert_allclose(batch.J, JF, atol=1e-12)
    spins, energies = brute_force(batch, max_vars=24)
    D = sign_match_neuron_decode(spins, 3)
    best = mismatch_cost(X, G, all_spins(3)[:, None, :].repeat(4, axis=1)).min(axis=0)
    np.testing.assert_allclose(energies, best, atol=1e-9)
    np.testing.assert_allclose(mismatch_cost(X, G, D), best, atol=1e-9)
    # the batched call of a registered backend reaches the same optimum here
    res = solve_batch(get_sampler("exact"), batch)
    np.testing.assert_allclose(res.best_energy, best, atol=1e-9)


@pytest.mark.parametrize("weighted", [True, False])
def test_optimal_mismatch_is_the_ground_state_energy(weighted):
    rng = np.random.default_rng(11)
    X = rng.choice([-1.0, 0.0, 1.0], size=(3, 3))
    G = rng.normal(size=(3, 4))
    G[0, 1] = 0.0
    best = optimal_mismatch(X, G, weighted=weighted)
    brute = mismatch_cost(X, G, all_spins(3)[:, None, :].repeat(4, axis=1), weighted=weighted)
    np.testing.assert_allclose(best, brute.min(axis=0), atol=1e-12)
    energies = brute_force(sign_match_neuron_ising(X, G, weighted=weighted), max_vars=24)[1]
    np.testing.assert_allclose(energies, best, atol=1e-9)


def test_inputs_must_be_integers_unless_resolution():
    X = np.array([[0.49, -1.02], [1.51, 0.0]])
    G = np.array([[1.0], [-1.0]])
    with pytest.raises(ProblemError, match=r"inputs must be integer-valued.*resolution"):
        sign_match_neuron_ising(X, G)
    a = sign_match_neuron_ising(X, G, resolution=0.5)
    b = sign_match_neuron_ising(np.round(X / 0.5), G)
    np.testing.assert_array_equal(a.h, b.h)
    with pytest.raises(ValueError, match=r"penalty must be >= 1.*got 0.5"):
        sign_match_neuron_ising(np.ones((1, 1)), np.ones((1, 1)), penalty=0.5)


@pytest.mark.parametrize(
    "opts,exc,msg",
    [
        ({"rows": 0}, ValueError, r"rows must be a positive int or None \(got 0\)"),
        ({"penalty": 0.5}, ValueError, r"penalty must be a finite number >= 1.*got 0.5"),
        ({"weighted": 1}, TypeError, r"weighted must be a bool \(got 1\)"),
        ({"weight_scale": "x"}, ValueError, r"weight_scale must be one of 'neuron', 'layer'"),
        ({"rowz": 3}, ValueError, r"unknown option 'rowz'"),
        ({"decode": "best"}, ValueError, r"decode must be one of 'energy', 'mismatch'"),
    ],
)
def test_options_are_checked(opts, exc, msg):
    with pytest.raises(exc, match=msg):
        check_sign_match_options(opts)


def test_select_rows_is_seeded_and_distinct():
    a, b = select_rows(20, 8, 5), select_rows(20, 8, 5)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 8 and not np.array_equal(a, select_rows(20, 8, 6))


# --------------------------------------------------------------------------- in QPSBGD


def _data(rows=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.where(torch.rand(rows, 4, generator=g) < 0.5, -1.0, 1.0)
    y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).long()
    return X, y


def _step(model, opt, X, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def test_qpsbgd_sign_match_step_on_exact_is_the_best_direction():
    """The update is W - lr*D with D minimising the mismatch count on the drawn rows."""
    torch.manual_seed(0)
    model = BinaryMLP(4, [3], 2)
    opt = QPSBGD(
        model, lr=0.1, formulation="sign_match", backend="exact", seed=1, sign_match={"rows": 3}
    )
    X, y = _data()
    layers = [model.net[0], model.net[3]]
    before = [lay.weight.detach().clone() for lay in layers]
    opt.zero_grad()
    F.cross_entropy(model(X), y).backward()
    captured = [(lay.captured_inputs.clone(), lay.captured_grad_out.clone()) for lay in layers]
    opt.step()
    for rec, lay, w0, (Xc, Gc) in zip(opt.last_stats, layers, before, captured, strict=True):
        n, m = Xc.shape[1], Gc.shape[1]
        assert rec["sign_match_rows"] == 3 and rec["variables"] == neuron_num_variables(3, n)
        assert rec["problems"] == m and rec["solved_by"] == "exact"
        keep = (Gc != 0).any(dim=1).numpy()
        pick = select_rows(int(keep.sum()), 3, rec["seed"])
        Xs, Gs = Xc.numpy()[keep][pick].astype(float), Gc.numpy()[keep][pick].astype(float)
        D = ((w0 - lay.weight.detach()) / 0.1).double().numpy()  # |w0| < 0.9: no clip
        np.testing.assert_allclose(np.abs(D), 1.0, atol=1e-5)
        D = np.round(D)
        brute = mismatch_cost(Xs, Gs, all_spins(n)[:, None, :].repeat(m, axis=1)).min(axis=0)
        np.testing.assert_allclose(mismatch_cost(Xs, Gs, D), brute, atol=1e-9)
        assert rec["mismatch"] <= rec["mismatch_sign_grad"] + 1e-12
        assert rec["mismatch"] == pytest.approx(rec["mismatch_optimum"], abs=1e-12)


def test_qpsbgd_sign_match_learns_and_is_reproducible():
    X, y = _data(64)

    def run(seed):
        torch.manual_seed(0)
        model = BinaryMLP(4, [8], 2)
        opt = QPSBGD(
            model,
            lr=0.05,
            formulation="sign_match",
            backend="neal",
            seed=seed,
            backend_options={"num_reads": 2, "num_sweeps": 30},
            other_lr=0.05,
            sign_match={"rows": 6},
        )
        losses = [_step(model, opt, X, y) for _ in range(25)]
        return losses, [p.detach().clone() for p in model.parameters()]

    a, pa = run(3)
    b, pb = run(3)
    assert a == b and all(torch.equal(x, z) for x, z in zip(pa, pb, strict=True))
    assert np.mean(a[-5:]) < np.mean(a[:5]) - 0.05


def test_qpsbgd_sign_match_too_large_for_the_backend_names_rows():
    torch.manual_seed(0)
    model = BinaryMLP(4, [3], 2)
    opt = QPSBGD(model, formulation="sign_match", backend="exact", sign_match={"rows": 8})
    X, y = _data()
    F.cross_entropy(model(X), y).backward()
    with pytest.raises(
        ProblemTooLargeError,
        match=r"have 44 spins \(fan_in 4 \+ 8 rows x \(1 \+ 4 slack bits\)\).*max_num_variables = 24.*lower sign_match rows \(now 8\)",
    ):
        opt.step()


def test_qpsbgd_rejects_bad_sign_match_options_and_formulation():
    model = BinaryMLP(4, [3], 2)
    with pytest.raises(ValueError, match=r"sign_match rows must be a positive int"):
        QPSBGD(model, formulation="sign_match", sign_match={"rows": -1})
    with pytest.raises(ValueError, match=r"formulation must be one of .*'sign_match'.*got 'x'"):
        QPSBGD(model, formulation="x")


def test_decode_mismatch_takes_the_read_with_the_best_direction():
    """A read's energy adds what its ancillas miss: the lowest-energy read need not carry the
    best direction. decode="mismatch" scores every read's direction by the objective."""
    from bnn.layers import BinaryLinear

    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.choice([-1.0, 1.0], size=(8, 5)), dtype=torch.float32)
    G = torch.as_tensor(rng.normal(size=(8, 6)), dtype=torch.float32)
    records = {}
    for decode in ("energy", "mismatch"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(BinaryLinear(5, 6))
        opt = QPSBGD(
            model,
            lr=0.1,
            formulation="sign_match",
            backend="neal",
            backend_options={"num_reads": 100, "num_sweeps": 100},
            seed=1,
            sign_match={"decode": decode},
        )
        (model(X) * G).sum().backward()  # dL/dz = G
        opt.step()
        records[decode] = opt.last_stats[0]
    e, mm = records["energy"], records["mismatch"]
    assert e["best_energy"] == mm["best_energy"]  # the same reads
    assert mm["mismatch"] == pytest.approx(mm["mismatch_optimum"], abs=1e-12)
    assert e["mismatch"] > mm["mismatch"] + 0.05  # the lowest-energy reads miss it here
