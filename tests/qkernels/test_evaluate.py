"""Evaluators and post-processing against reference values."""

import numpy as np
import pytest
from sklearn.metrics.pairwise import rbf_kernel as sk_rbf

from qkernels.ansatz import get_ansatz
from qkernels.evaluate import (
    accuracy,
    alignment,
    centered_alignment,
    effective_dimension,
    expressibility,
    fidelity_samples,
    geometric_difference,
    haar_fidelity_bins,
    rbf_kernel,
    spectrum,
    train_test_accuracy,
)
from qkernels.kernel import EmbeddingKernel
from qkernels.postprocessing import (
    apply_depolarizing_noise,
    mitigate_depolarizing_noise,
    psd_project,
)

rng = np.random.default_rng(3)
B = rng.normal(size=(8, 8))
K_PSD = B @ B.T / 8
Y8 = np.array([1, 1, -1, -1, 1, -1, 1, -1])


def test_alignment_floats():
    yy = np.outer(Y8, Y8)
    assert alignment(yy, Y8) == pytest.approx(1.0)
    assert centered_alignment(yy, Y8) == pytest.approx(1.0)
    assert isinstance(alignment(K_PSD, Y8), float)


def test_rbf_matches_sklearn():
    X = rng.normal(size=(5, 3))
    np.testing.assert_allclose(rbf_kernel(X, gamma=0.3), sk_rbf(X, gamma=0.3), atol=1e-12)
    np.testing.assert_allclose(rbf_kernel(X), sk_rbf(X, gamma=1 / (3 * X.var())), atol=1e-12)


def test_geometric_difference_references():
    assert geometric_difference(K_PSD, K_PSD) == pytest.approx(1.0, abs=1e-8)
    # K_C = I: g = sqrt(largest eigenvalue of K_Q normalised to trace N)
    Kq = K_PSD * 8 / np.trace(K_PSD)
    assert geometric_difference(K_PSD, np.eye(8)) == pytest.approx(
        np.sqrt(np.linalg.eigvalsh(Kq).max())
    )
    # invariant to scaling of either kernel (trace normalisation)
    assert geometric_difference(3 * K_PSD, 0.5 * np.eye(8)) == pytest.approx(
        geometric_difference(K_PSD, np.eye(8))
    )
    with pytest.raises(ValueError, match=r"same shape"):
        geometric_difference(np.eye(2), np.eye(3))


def test_spectrum_and_effective_dimension():
    assert effective_dimension(np.eye(5)) == pytest.approx(5.0)
    assert effective_dimension(np.ones((5, 5))) == pytest.approx(1.0)
    w = spectrum(K_PSD)
    np.testing.assert_allclose(w, np.sort(np.linalg.eigvalsh(K_PSD / 8))[::-1], atol=1e-12)
    assert np.all(np.diff(w) <= 1e-15)


def test_haar_bins_sum_to_one_and_match_density():
    p = haar_fidelity_bins(3, bins=50)
    assert p.sum() == pytest.approx(1.0)
    # first bin of D=8: 1 - (1 - 0.02)^7
    assert p[0] == pytest.approx(1 - 0.98**7)


def test_expressibility_references():
    # Haar-random states: KL close to 0
    n, d = 3, 8
    z = rng.normal(size=(4000, 2, d)) + 1j * rng.normal(size=(4000, 2, d))
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    fid = np.abs((z[:, 0].conj() * z[:, 1]).sum(-1)) ** 2
    assert expressibility(fid, n, bins=20) < 0.02
    # identical states: all mass in the last bin, KL = -log P_haar(last bin)
    bins = 20
    expected = -np.log((1 - (bins - 1) / bins) ** (d - 1))
    assert expressibility(np.ones(100), n, bins=bins) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"fidelities must be"):
        expressibility(np.array([1.5]), n)


def test_fidelity_samples_of_an_embedding():
    kern = EmbeddingKernel(get_ansatz("iqp", 3, 2), bandwidth=1.0)
    f = fidelity_samples(kern, 50, seed=0)
    assert f.shape == (50,) and (f >= 0).all() and (f <= 1 + 1e-12).all()
    np.testing.assert_array_equal(f, fidelity_samples(kern, 50, seed=0))
    # a narrow input range keeps all states close together: far from Haar, larger KL
    narrow = fidelity_samples(kern, 200, low=-0.05, high=0.05, seed=0)
    assert expressibility(narrow, 3) > expressibility(fidelity_samples(kern, 200, seed=0), 3)


def test_accuracies():
    assert accuracy([1, -1, 1, 1], [1, 1, 1, 1]) == 0.75

    class Const:
        def predict(self, X):
            return np.ones(len(X))

    out = train_test_accuracy(Const(), np.zeros((2, 1)), [1, -1], np.zeros((3, 1)), [1, 1, 1])
    assert out == {"train": 0.5, "test": 1.0}
    with pytest.raises(ValueError, match=r"same shape"):
        accuracy([1, 2], [1])


@pytest.mark.parametrize("method", ["clip", "flip", "shift"])
def test_psd_projection(method):
    K = np.array([[1.0, 1.2, 0.0], [1.2, 1.0, 0.3], [0.0, 0.3, 1.0]])
    P = psd_project(K, method)
    assert np.linalg.eigvalsh(P).min() > -1e-12
    np.testing.assert_allclose(P, P.T)
    np.testing.assert_allclose(psd_project(K_PSD, method), K_PSD, atol=1e-12)


def test_clip_is_the_closest_psd_matrix():
    K = np.array([[1.0, 1.2], [1.2, 1.0]])
    np.testing.assert_allclose(psd_project(K, "clip"), np.full((2, 2), 1.1), atol=1e-12)
    with pytest.raises(ValueError, match=r"method must be one of"):
        psd_project(K, "nearest")


@pytest.mark.parametrize("method", ["single", "average", "split_channel"])
def test_depolarizing_mitigation_inverts_the_noise_model(method):
    kern = EmbeddingKernel(get_ansatz("hubregtsen", 3, 2), seed=0)
    K = kern.gram(rng.uniform(-1, 1, size=(6, 3))).detach().numpy()
    lam = 0.8 if method != "split_channel" else rng.uniform(0.7, 0.95, size=6)
    noisy = apply_depolarizing_noise(K, 3, lam)
    assert np.abs(noisy - K).max() > 0.05
    np.testing.assert_allclose(mitigate_depolarizing_noise(noisy, 3, method), K, atol=1e-12)


def test_mitigation_rejects_mixed_diagonal():
    with pytest.raises(ValueError, match=r"fully mixed"):
        mitigate_depolarizing_noise(np.full((2, 2), 0.1), 3)
