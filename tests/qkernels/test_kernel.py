"""Exactness and invariants of the batched statevector kernels against PennyLane's per-pair reference."""

import pickle

import numpy as np
import pennylane as qml
import pytest
import torch

from qkernels.ansatz import ANSATZE, from_callable, get_ansatz
from qkernels.kernel import (
    EmbeddingKernel,
    bloch_vectors,
    plan_tiles,
    projected_gram_from_states,
    reduced_density_matrices,
)
from qsgd.errors import ProblemTooLargeError, UnknownBackendError

RNG = np.random.default_rng(1234)
X = RNG.uniform(-1, 1, size=(6, 2))
Y = RNG.uniform(-1, 1, size=(4, 2))


def make(name, n_wires=3, n_layers=2, **kw):
    return EmbeddingKernel(
        get_ansatz(name, n_wires, n_layers, n_features=2), bandwidth=0.8, seed=7, **kw
    )


@pytest.mark.parametrize("name", sorted(ANSATZE))
def test_gram_equals_pennylane_per_pair_reference(name):
    kern = make(name)
    ref = qml.kernels.square_kernel_matrix(X, kern.pair_kernel(), assume_normalized_kernel=False)
    np.testing.assert_allclose(kern.gram(X).detach().numpy(), ref, atol=1e-10, rtol=0)
    ref_ab = qml.kernels.kernel_matrix(Y, X, kern.pair_kernel())
    np.testing.assert_allclose(kern.gram(Y, X).detach().numpy(), ref_ab, atol=1e-10, rtol=0)


def test_user_callable_ansatz_matches_reference():
    def my_map(x, params, wires):
        for i, w in enumerate(wires):
            qml.RX(params[i] * x[..., i], wires=w)
        qml.CNOT(wires=[wires[0], wires[1]])
        qml.RY(params[2] * x[..., 0], wires=wires[1])

    ansatz = from_callable(my_map, n_wires=2, param_shape=(3,))
    kern = EmbeddingKernel(ansatz, seed=3)
    ref = qml.kernels.square_kernel_matrix(X, kern.pair_kernel(), assume_normalized_kernel=False)
    np.testing.assert_allclose(kern.gram(X).detach().numpy(), ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["hubregtsen", "iqp"])
def test_gram_is_symmetric_unit_diagonal_psd(name):
    kern = make(name, n_wires=4)
    x = np.random.default_rng(0).uniform(-1, 1, size=(12, 2))
    K = kern.gram(x).detach().numpy()
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_allclose(np.diag(K), 1.0, atol=1e-12)
    assert np.linalg.eigvalsh(K).min() > -1e-10
    assert (K >= 0).all() and (K <= 1 + 1e-12).all()


def test_tiling_gives_the_same_gram():
    kern = make("hubregtsen")
    full = kern.gram(Y, X).detach().numpy()
    # a budget that allows about one row per tile
    budget = plan_budget = 6 * 8 * 16 + 4 * 6 * 8 + (8 + 2 * 6) * 16
    assert plan_tiles(4, 6, 8, plan_budget) == 1
    small = make("hubregtsen", memory_budget_bytes=budget)
    np.testing.assert_allclose(small.gram(Y, X).detach().numpy(), full, atol=1e-14)
    np.testing.assert_allclose(
        small.gram(X).detach().numpy(), kern.gram(X).detach().numpy(), atol=1e-14
    )


def test_state_batches_give_the_same_states():
    a, b = make("hubregtsen"), make("hubregtsen", state_batch=4)
    np.testing.assert_allclose(
        a.states(X).detach().numpy(), b.states(X).detach().numpy(), atol=1e-14
    )


def test_too_large_for_memory_budget_says_how_to_tile():
    kern = make("hubregtsen", memory_budget_bytes=10_000)
    big = np.zeros((200, 2))
    with pytest.raises(ProblemTooLargeError, match=r"memory_budget_bytes=10000.*tile by hand"):
        kern.gram(big)


def test_gradients_flow_to_params_and_bandwidth():
    kern = make("hubregtsen", trainable_bandwidth=True)
    K = kern.gram(X)
    K.sum().backward()
    assert kern.params.grad is not None and kern.params.grad.abs().sum() > 0
    assert kern.bandwidth.grad is not None and kern.bandwidth.grad.abs() > 0


def test_gram_gradient_matches_finite_differences():
    kern = make("hubregtsen", n_wires=2, n_layers=1)
    x = torch.as_tensor(X[:3])
    qnode = kern._state_qnode()

    def gram_of(p, b):
        s = qnode(x * b, p)
        return (s @ s.conj().T).abs() ** 2

    p0 = kern.params.detach().clone().requires_grad_(True)
    b0 = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram_of, (p0, b0), eps=1e-6, atol=1e-6)


def test_bandwidth_fixes_near_identity_gram_of_8_qubits():
    x = np.random.default_rng(0).uniform(0, np.pi, size=(20, 8))
    wide = EmbeddingKernel(get_ansatz("iqp", 8, 2), bandwidth=1.0).gram(x).detach().numpy()
    narrow = EmbeddingKernel(get_ansatz("iqp", 8, 2), bandwidth=0.1).gram(x).detach().numpy()
    off = ~np.eye(20, dtype=bool)
    assert wide[off].mean() < 0.05
    assert narrow[off].mean() > 0.3


def test_shot_gram_is_seeded_close_and_on_the_shot_grid():
    kern = make("hubregtsen")
    exact = kern.gram(X).detach().numpy()
    a = kern.shot_gram(X, shots=4000, seed=5)
    b = kern.shot_gram(X, shots=4000, seed=5, pair_batch=4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - exact).max() < 0.05
    np.testing.assert_allclose(a * 4000, np.round(a * 4000), atol=1e-9)
    np.testing.assert_array_equal(np.diag(a), 1.0)
    rect = kern.shot_gram(Y, X, shots=4000, seed=5)
    assert rect.shape == (4, 6)
    assert np.abs(rect - kern.gram(Y, X).detach().numpy()).max() < 0.05


def test_shot_gram_rejects_bad_shots():
    with pytest.raises(ValueError, match=r"shots must be a positive int \(got 0\)"):
        make("angle").shot_gram(X, shots=0)


def test_reduced_density_matrices_match_pennylane():
    kern = make("hubregtsen")
    states = kern.states(X).detach()
    rho = reduced_density_matrices(states, 3).numpy()
    for w in range(3):
        ref = qml.math.reduce_statevector(states.numpy(), indices=[w])
        np.testing.assert_allclose(rho[:, w], ref, atol=1e-12)
    r = bloch_vectors(states, 3).numpy()
    assert np.all(np.linalg.norm(r, axis=-1) <= 1 + 1e-12)


def test_projected_kernel_matches_per_pair_reference():
    kern = make("hubregtsen")
    dev = qml.device("default.qubit", wires=3)

    @qml.qnode(dev)
    def rdm(x, w):
        kern.ansatz(x * 0.8, kern.params.detach().numpy())
        return qml.density_matrix(wires=[w])

    def k(x1, x2):
        return np.exp(-0.7 * sum(np.linalg.norm(rdm(x1, w) - rdm(x2, w)) ** 2 for w in range(3)))

    ref = qml.kernels.kernel_matrix(Y, X, k)
    np.testing.assert_allclose(
        kern.projected_gram(Y, X, gamma=0.7).detach().numpy(), ref, atol=1e-10
    )
    K = kern.projected_gram(X, gamma=0.7).detach().numpy()
    np.testing.assert_allclose(np.diag(K), 1.0, atol=1e-12)
    assert np.linalg.eigvalsh(K).min() > -1e-10


def test_projected_of_identical_states_is_one():
    s = torch.tensor([[1, 0, 0, 0]], dtype=torch.complex128)
    assert float(projected_gram_from_states(s, s, 2)[0, 0]) == pytest.approx(1.0)


def test_lightning_device_forward_matches_default():
    pytest.importorskip("pennylane_lightning")
    a, b = make("hubregtsen"), make("hubregtsen", device="lightning.qubit")
    np.testing.assert_allclose(b.gram(X).detach().numpy(), a.gram(X).detach().numpy(), atol=1e-10)


def test_kernel_pickles():
    kern = make("hubregtsen")
    kern.gram(X)
    clone = pickle.loads(pickle.dumps(kern))
    np.testing.assert_array_equal(clone.gram(X).detach().numpy(), kern.gram(X).detach().numpy())


def test_same_seed_same_params_different_seed_different():
    a, b, c = (
        make("hubregtsen"),
        make("hubregtsen"),
        EmbeddingKernel(get_ansatz("hubregtsen", 3), seed=8),
    )
    assert torch.equal(a.params, b.params)
    assert not torch.equal(a.params, c.params)


def test_unknown_device_lists_known():
    with pytest.raises(
        UnknownBackendError, match=r"unknown device 'nope'.*default\.qubit.*lightning\.qubit"
    ):
        make("angle", device="nope")


@pytest.mark.parametrize("name", ["hubregtsen", "hardware_efficient"])
def test_one_layer_trainable_unitary_cancels_in_the_fidelity(name):
    # U = W(θ) S(x): W cancels in |<φ(x)|φ(x')>|², so one layer has zero gradient; two do not.
    grads = []
    for layers in (1, 2):
        kern = make(name, n_layers=layers)
        kern.gram(X).sum().backward()
        grads.append(float(kern.params.grad.abs().max()))
    assert grads[0] < 1e-12 < 1e-3 < grads[1]
