"""Alignment: reference values, PennyLane agreement, gradients vs finite differences; training."""

import numpy as np
import pennylane as qml
import pytest
import torch

from qkernels.alignment import binary_labels, centered_alignment, target_alignment
from qkernels.ansatz import get_ansatz
from qkernels.datasets import load_dataset
from qkernels.kernel import EmbeddingKernel
from qkernels.training import train_alignment
from qsgd.errors import ConfigError, UnknownBackendError

rng = np.random.default_rng(0)
A = rng.normal(size=(6, 6))
K_RAND = A @ A.T
Y6 = np.array([1, -1, 1, 1, -1, -1])


def test_alignment_reference_values():
    assert float(target_alignment(np.eye(4), [1, -1, 1, -1])) == pytest.approx(0.5)
    ideal = np.outer(Y6, Y6)
    assert float(target_alignment(ideal, Y6)) == pytest.approx(1.0)
    assert float(centered_alignment(ideal, Y6)) == pytest.approx(1.0)
    # explicit Frobenius formula
    yy = np.outer(Y6, Y6)
    ref = (K_RAND * yy).sum() / (np.linalg.norm(K_RAND) * np.linalg.norm(yy))
    assert float(target_alignment(K_RAND, Y6)) == pytest.approx(ref, abs=1e-12)
    H = np.eye(6) - 1 / 6
    Kc, Yc = H @ K_RAND @ H, H @ yy @ H
    ref_c = (Kc * Yc).sum() / (np.linalg.norm(Kc) * np.linalg.norm(Yc))
    assert float(centered_alignment(K_RAND, Y6)) == pytest.approx(ref_c, abs=1e-12)


@pytest.mark.parametrize("rescale", [False, True])
def test_alignment_equals_pennylane(rescale):
    y = np.array([1, -1, 1, 1, 1, -1])
    X = rng.uniform(-1, 1, size=(6, 2))
    kern = EmbeddingKernel(get_ansatz("hubregtsen", 2, 1), seed=0)
    K = kern.gram(X).detach().numpy()
    ref = qml.kernels.target_alignment(
        X, y, kern.pair_kernel(), assume_normalized_kernel=True, rescale_class_labels=rescale
    )
    assert float(target_alignment(K, y, rescale_classes=rescale)) == pytest.approx(
        float(ref), abs=1e-10
    )


def test_labels_mapped_and_validated():
    assert binary_labels([0, 1, 1]).tolist() == [-1.0, 1.0, 1.0]
    assert float(target_alignment(K_RAND, np.where(Y6 > 0, 5, 2))) == pytest.approx(
        float(target_alignment(K_RAND, Y6))
    )
    with pytest.raises(
        ValueError,
        match=r"y must hold binary labels for alignment \(got 3 distinct values: 0, 1, 2\)",
    ):
        target_alignment(np.eye(3), [0, 1, 2])
    with pytest.raises(ValueError, match=r"y must be finite"):
        target_alignment(np.eye(2), [np.nan, 1.0])
    with pytest.raises(ValueError, match=r"expected 3, got 2"):
        target_alignment(np.eye(3), [1, -1])
    with pytest.raises(ValueError, match=r"single class"):
        centered_alignment(np.eye(3), [1, 1, 1])
    with pytest.raises(ValueError, match=r"K must be a square Gram matrix \(got shape \(2, 3\)\)"):
        target_alignment(np.ones((2, 3)), [1, -1])


@pytest.mark.parametrize("score", [target_alignment, centered_alignment])
def test_alignment_gradient_matches_finite_differences(score):
    X = torch.as_tensor(rng.uniform(-1, 1, size=(6, 2)))
    kern = EmbeddingKernel(get_ansatz("hubregtsen", 2, 2), seed=1, trainable_bandwidth=True)
    a = score(kern.gram(X), Y6)
    a.backward()
    grad = kern.params.grad.clone().numpy().ravel()
    gb = float(kern.bandwidth.grad)
    eps = 1e-6
    p0 = kern.params.detach().clone()
    fd = np.empty_like(grad)
    with torch.no_grad():
        for i in range(p0.numel()):  # finite differences over the few parameters of a test ansatz
            values = []
            for sign in (1, -1):
                p = p0.clone().view(-1)
                p[i] += sign * eps
                kern.params.copy_(p.view(p0.shape))
                values.append(float(score(kern.gram(X), Y6)))
            fd[i] = (values[0] - values[1]) / (2 * eps)
        kern.params.copy_(p0)
        b0 = float(kern.bandwidth)
        kern.bandwidth.fill_(b0 + eps)
        up = float(score(kern.gram(X), Y6))
        kern.bandwidth.fill_(b0 - eps)
        down = float(score(kern.gram(X), Y6))
        kern.bandwidth.fill_(b0)
    np.testing.assert_allclose(grad, fd, atol=1e-6)
    assert gb == pytest.approx((up - down) / (2 * eps), abs=1e-6)


def test_training_increases_alignment_and_is_seeded():
    ds = load_dataset("checkerboard", n_train=16, n_test=4, seed=0)

    def run(seed):
        kern = EmbeddingKernel(get_ansatz("hubregtsen", 3, 2, n_features=2), seed=0)
        rec = train_alignment(
            kern, ds.X_train, ds.y_train, steps=6, batch_size=8, lr=0.1, seed=seed, eval_every=3
        )
        return kern, rec

    kern, rec = run(0)
    _, rec2 = run(0)
    _, rec3 = run(1)
    assert rec.alignment == rec2.alignment
    assert rec.alignment != rec3.alignment
    start = float(
        target_alignment(  # untrained kernel, same seed
            EmbeddingKernel(get_ansatz("hubregtsen", 3, 2, n_features=2), seed=0)
            .gram(ds.X_train)
            .detach(),
            ds.y_train,
        )
    )
    assert rec.full_alignment[-1][1] > start
    assert [s for s, _ in rec.full_alignment] == [0, 3, 6]
    assert rec.full_alignment[0][1] == pytest.approx(start)
    assert len(rec.step_seconds) == 6
    assert np.allclose(rec.params, kern.params.detach().numpy())


def test_training_bad_inputs():
    kern = EmbeddingKernel(get_ansatz("hubregtsen", 2, 1), seed=0)
    X = rng.uniform(-1, 1, size=(6, 2))
    with pytest.raises(ValueError, match=r"binary labels"):
        train_alignment(kern, X, [0, 1, 2, 0, 1, 2], steps=1)
    with pytest.raises(ConfigError, match=r"batch_size must be an int >= 2 \(got 1\)"):
        train_alignment(kern, X, Y6, steps=1, batch_size=1)
    with pytest.raises(
        UnknownBackendError, match=r"unknown optimizer 'lbfgs'; known optimizers: adam, sgd"
    ):
        train_alignment(kern, X, Y6, steps=1, optimizer="lbfgs")
    with pytest.raises(ValueError, match=r"expected 2 features, got 3"):
        train_alignment(kern, np.ones((6, 3)), Y6, steps=1)
