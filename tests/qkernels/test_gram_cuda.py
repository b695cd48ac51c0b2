"""The Gram product on CUDA (runs only where ``torch.cuda.is_available()``).

``EmbeddingKernel`` simulates statevectors with PennyLane on the CPU; the Gram itself is
``gram_from_states`` (``|A B^H|^2``), a pure torch function that runs on whatever device its
inputs live on. These tests pin that device path: on CUDA it equals the CPU result and keeps the
kernel's invariants. ``benchmarks/gpu_check.py`` times it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qkernels.ansatz import get_ansatz
from qkernels.kernel import EmbeddingKernel, gram_from_states

cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)"
)


def _states(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.complex(
        torch.randn((n, dim), generator=g, dtype=torch.float64),
        torch.randn((n, dim), generator=g, dtype=torch.float64),
    )
    return z / z.abs().square().sum(dim=1, keepdim=True).sqrt()


def test_gram_from_states_on_cpu_is_the_fidelity():
    """The function the CUDA tests move to the GPU (runs everywhere, so the pin is checked)."""
    a, b = _states(5, 8, 0), _states(3, 8, 1)
    ref = np.abs(a.numpy() @ b.numpy().conj().T) ** 2
    np.testing.assert_allclose(gram_from_states(a, b).numpy(), ref, atol=1e-14, rtol=0)


@cuda
def test_gram_from_states_on_cuda_equals_cpu():
    a, b = _states(300, 256, 2), _states(200, 256, 3)
    cpu = gram_from_states(a, b)
    gpu = gram_from_states(a.cuda(), b.cuda())
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float64
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-12, rtol=0)


@cuda
def test_embedding_kernel_states_give_the_same_gram_on_cuda():
    kern = EmbeddingKernel(get_ansatz("hubregtsen", 4, 2, n_features=2), bandwidth=0.8, seed=7)
    x = np.random.default_rng(0).uniform(-1, 1, size=(12, 2))
    with torch.no_grad():
        states = kern.states(x)
        K_cpu = kern.gram(x).numpy()
    K_gpu = gram_from_states(states.cuda(), states.cuda()).cpu().numpy()
    np.testing.assert_allclose(K_gpu, K_cpu, atol=1e-12, rtol=0)
    np.testing.assert_allclose(np.diag(K_gpu), 1.0, atol=1e-12)
    assert np.linalg.eigvalsh(0.5 * (K_gpu + K_gpu.T)).min() > -1e-10
