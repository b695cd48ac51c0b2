"""scikit-learn estimators on quantum embedding kernels.

:class:`QuantumKernelClassifier` wraps ``SVC(kernel="precomputed")`` and optionally trains the
kernel by alignment before fitting the SVM; :class:`QuantumKernelRidge` wraps
``KernelRidge(kernel="precomputed")`` for regression. Both take every setting as a constructor
keyword (``get_params``/``set_params``), so they work in ``GridSearchCV`` and ``cross_val_score``.

Example:
    >>> from qkernels.datasets import load_dataset
    >>> ds = load_dataset("moons", n_train=20, n_test=20, seed=0)
    >>> clf = QuantumKernelClassifier(ansatz="hubregtsen", n_layers=2, bandwidth=0.5)
    >>> 0.5 < clf.fit(ds.X_train, ds.y_train).score(ds.X_test, ds.y_test) <= 1.0
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from qkernels.ansatz import get_ansatz
from qkernels.kernel import DEFAULT_MEMORY_BUDGET, EmbeddingKernel
from qkernels.training import TrainingRecord, train_alignment

__all__ = ["QuantumKernelClassifier", "QuantumKernelRidge"]


class _QuantumKernelMixin:
    """Builds the kernel from the estimator's parameters and evaluates Gram matrices."""

    ansatz: str
    n_wires: int | None
    n_layers: int
    bandwidth: float
    trainable_bandwidth: bool
    device: str
    seed: int | None
    memory_budget_bytes: int

    def _build_kernel(self, n_features: int) -> EmbeddingKernel:
        n_wires = n_features if self.n_wires is None else self.n_wires
        if n_features > n_wires:
            raise ValueError(
                f"X has more features than n_wires (expected at most {n_wires}, got {n_features})"
            )
        ansatz = get_ansatz(self.ansatz, n_wires, self.n_layers, n_features=n_features)
        return EmbeddingKernel(
            ansatz,
            bandwidth=float(self.bandwidth),
            trainable_bandwidth=self.trainable_bandwidth,
            device=self.device,
            seed=self.seed,
            memory_budget_bytes=self.memory_budget_bytes,
        )

    def _gram(self, X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
        with torch.no_grad():
            return self.kernel_.gram(X, Y).numpy()


class QuantumKernelClassifier(_QuantumKernelMixin, ClassifierMixin, BaseEstimator):
    """Support vector classifier on a (trainable) quantum embedding kernel.

    Args:
        ansatz: ansatz name (see ``qkernels.ansatz.ANSATZE``).
        n_layers: layers of the ansatz.
        n_wires: qubits; ``None`` uses one qubit per feature (features cycle over extra wires).
        bandwidth: input scale applied before the embedding.
        trainable_bandwidth: train the bandwidth along with the ansatz parameters.
        train_steps: alignment training steps before fitting the SVM (0: untrained kernel).
            Training needs binary labels.
        batch_size: rows per training step.
        lr: training learning rate (Adam).
        centered: train on centred alignment.
        C: SVM regularisation.
        device: simulator name.
        seed: seed of parameter initialisation and of the training subsets.
        memory_budget_bytes: memory bound of one Gram computation.

    Attributes:
        kernel_: the fitted :class:`~qkernels.kernel.EmbeddingKernel`.
        svc_: the fitted ``SVC``.
        classes_, n_features_in_: as in scikit-learn.
        training_: the :class:`~qkernels.training.TrainingRecord` (or ``None``).

    Shape:
        - X: ``(N, n_features)``; y: ``(N,)``
    """

    def __init__(
        self,
        ansatz: str = "hubregtsen",
        n_layers: int = 2,
        n_wires: int | None = None,
        bandwidth: float = 1.0,
        trainable_bandwidth: bool = False,
        train_steps: int = 0,
        batch_size: int = 8,
        lr: float = 0.05,
        centered: bool = False,
        C: float = 1.0,
        device: str = "default.qubit",
        seed: int | None = 0,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        self.ansatz = ansatz
        self.n_layers = n_layers
        self.n_wires = n_wires
        self.bandwidth = bandwidth
        self.trainable_bandwidth = trainable_bandwidth
        self.train_steps = train_steps
        self.batch_size = batch_size
        self.lr = lr
        self.centered = centered
        self.C = C
        self.device = device
        self.seed = seed
        self.memory_budget_bytes = memory_budget_bytes

    def fit(self, X: Any, y: Any) -> QuantumKernelClassifier:
        """Build (and optionally train) the kernel, then fit the SVM on the training Gram matrix."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        self.kernel_ = self._build_kernel(X.shape[1])
        self.training_: TrainingRecord | None = None
        if self.train_steps:
            if len(self.classes_) != 2:
                raise ValueError(
                    "train_steps > 0 needs binary labels for alignment training "
                    f"(got {len(self.classes_)} classes)"
                )
            self.training_ = train_alignment(
                self.kernel_,
                X,
                y,
                steps=self.train_steps,
                batch_size=self.batch_size,
                lr=self.lr,
                centered=self.centered,
                seed=self.seed,
            )
        self.X_fit_ = X
        self.svc_ = SVC(kernel="precomputed", C=self.C).fit(self._gram(X), y)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """SVM decision values for ``X``, shape ``(N,)`` (binary) or ``(N, n_classes)``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.svc_.decision_function(self._gram(X, self.X_fit_))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels, shape ``(N,)``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.svc_.predict(self._gram(X, self.X_fit_))


class QuantumKernelRidge(_QuantumKernelMixin, RegressorMixin, BaseEstimator):
    """Kernel ridge regression on a fixed quantum embedding kernel.

    Args:
        ansatz, n_layers, n_wires, bandwidth, device, seed, memory_budget_bytes: as in
            :class:`QuantumKernelClassifier`.
        alpha: ridge regularisation.

    Shape:
        - X: ``(N, n_features)``; y: ``(N,)`` or ``(N, n_targets)``
    """

    trainable_bandwidth = False

    def __init__(
        self,
        ansatz: str = "hubregtsen",
        n_layers: int = 2,
        n_wires: int | None = None,
        bandwidth: float = 1.0,
        alpha: float = 1.0,
        device: str = "default.qubit",
        seed: int | None = 0,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        self.ansatz = ansatz
        self.n_layers = n_layers
        self.n_wires = n_wires
        self.bandwidth = bandwidth
        self.alpha = alpha
        self.device = device
        self.seed = seed
        self.memory_budget_bytes = memory_budget_bytes

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> QuantumKernelRidge:
        """Fit kernel ridge regression on the training Gram matrix."""
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        self.kernel_ = self._build_kernel(X.shape[1])
        self.X_fit_ = X
        self.ridge_ = KernelRidge(kernel="precomputed", alpha=self.alpha).fit(self._gram(X), y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.ridge_.predict(self._gram(X, self.X_fit_))
