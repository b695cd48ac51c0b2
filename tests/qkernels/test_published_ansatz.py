"""The ``hubregtsen`` ansatz equals the circuit of Hubregtsen et al. 2021 as published.

The reference below is written independently from the PennyLane demo's description of the
embedding (``layer(x, params, wires, i0=0, inc=1)``, called with ``i0 = j * len(wires)`` for layer
``j``, a ring of ``CRZ``), evaluated one overlap circuit per pair like ``qml.kernels`` does.
"""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest
import torch

from qkernels.ansatz import get_ansatz
from qkernels.kernel import EmbeddingKernel


def _demo_layer(x, params, wires, i0=0, inc=1):
    i = i0
    for j, wire in enumerate(wires):
        qml.Hadamard(wires=[wire])
        qml.RZ(x[i % len(x)], wires=[wire])
        i += inc
        qml.RY(params[0, j], wires=[wire])
    n = len(wires)
    ring = [(wires[0], wires[1])] if n == 2 else [(wires[k], wires[(k + 1) % n]) for k in range(n)]
    for k, pair in enumerate(ring):
        qml.CRZ(params[1][k], wires=list(pair))


def _demo_ansatz(x, params, wires):
    for j, layer_params in enumerate(params):
        _demo_layer(x, layer_params, wires, i0=j * len(wires))


def _demo_kernel(n_wires, params):
    dev = qml.device("default.qubit", wires=n_wires)
    wires = list(range(n_wires))

    @qml.qnode(dev)
    def overlap(x1, x2):
        _demo_ansatz(x1, params, wires)
        qml.adjoint(_demo_ansatz)(x2, params, wires)
        return qml.probs(wires=wires)

    return lambda a, b: float(overlap(a, b)[0])


@pytest.mark.parametrize(("n_wires", "n_features", "n_layers"), [(5, 2, 6), (3, 3, 2), (4, 3, 3)])
def test_hubregtsen_equals_the_published_circuit(n_wires, n_features, n_layers):
    rng = np.random.default_rng(7)
    x = rng.uniform(-1.0, 1.0, size=(6, n_features))
    params = rng.uniform(0.0, 2 * np.pi, size=(n_layers, 2, n_wires))
    kern = EmbeddingKernel(
        get_ansatz("hubregtsen", n_wires, n_layers, n_features=n_features), params, bandwidth=1.0
    )
    with torch.no_grad():
        ours = kern.gram(x).numpy()
    ref = qml.kernels.square_kernel_matrix(x, _demo_kernel(n_wires, params))
    np.testing.assert_allclose(ours, ref, atol=1e-10, rtol=0)


def test_unshifted_feature_assignment_is_a_different_circuit():
    """Guard: the old ``k mod n_features`` assignment differs visibly in the demo's setting."""
    n_wires, n_features, n_layers = 5, 2, 6
    rng = np.random.default_rng(7)
    x = rng.uniform(-1.0, 1.0, size=(6, n_features))
    params = rng.uniform(0.0, 2 * np.pi, size=(n_layers, 2, n_wires))
    wires = list(range(n_wires))

    def unshifted(xv, p, w):
        for layer_params in p:
            _demo_layer(xv, layer_params, w, i0=0)

    dev = qml.device("default.qubit", wires=n_wires)

    @qml.qnode(dev)
    def overlap(x1, x2):
        unshifted(x1, params, wires)
        qml.adjoint(unshifted)(x2, params, wires)
        return qml.probs(wires=wires)

    old = qml.kernels.square_kernel_matrix(x, lambda a, b: float(overlap(a, b)[0]))
    new = qml.kernels.square_kernel_matrix(x, _demo_kernel(n_wires, params))
    assert np.abs(old - new).max() > 0.05
