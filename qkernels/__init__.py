"""Trainable quantum embedding kernels with PennyLane.

Data flows: data -> embedding ansatz -> batched statevectors -> Gram matrix -> alignment loss ->
training -> SVM -> report.

Example:
    >>> from qkernels import EmbeddingKernel, get_ansatz, train_alignment, load_dataset
    >>> ds = load_dataset("checkerboard", n_train=40, n_test=40, seed=0)
    >>> kern = EmbeddingKernel(get_ansatz("hubregtsen", n_wires=5, n_layers=4, n_features=2))
    >>> record = train_alignment(kern, ds.X_train, ds.y_train, steps=100)
    >>> K = kern.gram(ds.X_test, ds.X_train)  # (40, 40) test x train
"""

from qkernels.alignment import binary_labels, centered_alignment, target_alignment
from qkernels.ansatz import ANSATZE, Ansatz, from_callable, get_ansatz
from qkernels.datasets import DATASETS, Dataset, load_dataset
from qkernels.device import DEVICES, make_device
from qkernels.kernel import EmbeddingKernel, gram_from_states, projected_gram_from_states
from qkernels.postprocessing import (
    apply_depolarizing_noise,
    mitigate_depolarizing_noise,
    psd_project,
)
from qkernels.svm import QuantumKernelClassifier, QuantumKernelRidge
from qkernels.training import TrainingRecord, train_alignment

__all__ = [
    "ANSATZE",
    "Ansatz",
    "DATASETS",
    "DEVICES",
    "Dataset",
    "EmbeddingKernel",
    "QuantumKernelClassifier",
    "QuantumKernelRidge",
    "TrainingRecord",
    "apply_depolarizing_noise",
    "binary_labels",
    "centered_alignment",
    "from_callable",
    "get_ansatz",
    "gram_from_states",
    "load_dataset",
    "make_device",
    "mitigate_depolarizing_noise",
    "projected_gram_from_states",
    "psd_project",
    "target_alignment",
    "train_alignment",
]
