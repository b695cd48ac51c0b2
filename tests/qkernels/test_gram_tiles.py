"""The gradient-free Gram path: tiled into one output, equal to the autograd path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qkernels.ansatz import get_ansatz
from qkernels.kernel import EmbeddingKernel, plan_tiles


@pytest.fixture
def kern():
    # a budget that forces several tiles of a 120-point Gram
    return EmbeddingKernel(
        get_ansatz("hubregtsen", 4, 2), bandwidth=0.5, seed=3, memory_budget_bytes=400_000
    )


def test_budget_forces_several_tiles(kern):
    assert plan_tiles(120, 120, 16, kern.memory_budget_bytes, symmetric=True) < 120


def test_no_grad_gram_equals_autograd_gram(kern):
    X = np.random.default_rng(0).uniform(-1, 1, (120, 4))
    Y = np.random.default_rng(1).uniform(-1, 1, (37, 4))
    with_graph = kern.gram(X)
    assert with_graph.requires_grad
    with torch.no_grad():
        sym, rect = kern.gram(X), kern.gram(Y, X)
    assert not sym.requires_grad and not rect.requires_grad
    np.testing.assert_allclose(sym.numpy(), with_graph.detach().numpy(), atol=1e-14, rtol=0)
    np.testing.assert_allclose(rect.numpy(), kern.gram(Y, X).detach().numpy(), atol=1e-14, rtol=0)
    assert torch.equal(sym, sym.T)
    assert torch.all(sym.diagonal() == 1.0)
    # the rectangular Gram against itself equals the symmetric one off the diagonal
    np.testing.assert_allclose(kern.gram(X, X).detach().numpy(), sym.numpy(), atol=1e-12)


def test_untrainable_kernel_builds_no_graph_even_outside_no_grad():
    kern = EmbeddingKernel(get_ansatz("iqp", 3, 1), bandwidth=0.7)
    X = np.random.default_rng(2).uniform(-1, 1, (20, 3))
    K = kern.gram(X)
    assert not K.requires_grad
    assert torch.equal(K, K.T)
