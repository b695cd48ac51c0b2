"""The finite-shot Gram on any installed PennyLane device, with a clear error for a missing one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qkernels.ansatz import get_ansatz
from qkernels.device import make_shot_device
from qkernels.kernel import EmbeddingKernel
from qsgd.errors import BackendUnavailableError, ConfigError

DEVICES = ["default.qubit", "default.mixed"]
try:  # the extra qsgd[lightning]
    import pennylane_lightning  # noqa: F401

    DEVICES.append("lightning.qubit")
except ImportError:  # pragma: no cover
    pass


@pytest.mark.parametrize("device", DEVICES)
def test_shot_gram_estimates_the_exact_gram_on_each_device(device):
    X = np.random.default_rng(0).uniform(-1, 1, (6, 3))
    kern = EmbeddingKernel(get_ansatz("hubregtsen", 3, 2), bandwidth=0.6, seed=0)
    with torch.no_grad():
        exact = kern.gram(X).numpy()
    shots = 4000
    K = kern.shot_gram(X, shots=shots, seed=3, device=device)
    assert np.array_equal(K, K.T) and np.all(np.diag(K) == 1.0)
    # every entry within 5 binomial standard deviations of the exact fidelity
    sd = np.sqrt(exact * (1 - exact) / shots)
    assert np.all(np.abs(K - exact) <= 5 * sd + 1.0 / shots)
    # it is an estimate, not the exact value
    assert np.abs(K - exact).max() > 0


def test_missing_device_names_the_device_and_the_remedy():
    kern = EmbeddingKernel(get_ansatz("angle", 2), seed=0)
    with pytest.raises(BackendUnavailableError, match=r"device 'nosuch\.device' is not available"):
        kern.shot_gram(np.zeros((2, 2)), shots=10, device="nosuch.device")
    with pytest.raises(ConfigError, match=r"shot_device must be a PennyLane device name"):
        make_shot_device("", 2)


@pytest.mark.skipif("lightning.qubit" not in DEVICES, reason="pennylane-lightning not installed")
def test_forward_only_device_refuses_training_with_a_clear_error():
    from qkernels.svm import QuantumKernelClassifier
    from qkernels.training import train_alignment

    kern = EmbeddingKernel(get_ansatz("hubregtsen", 2, 1), device="lightning.qubit", seed=0)
    X = np.random.default_rng(0).uniform(-1, 1, (8, 2))
    y = np.array([1, -1] * 4)
    with pytest.raises(ConfigError, match=r"'lightning.qubit' computes Gram matrices forward only"):
        train_alignment(kern, X, y, steps=2, batch_size=4)
    assert train_alignment(kern, X, y, steps=0).alignment == []
    clf = QuantumKernelClassifier(n_layers=1, device="lightning.qubit", train_steps=2)
    with pytest.raises(ConfigError, match="forward only"):
        clf.fit(X, y)
