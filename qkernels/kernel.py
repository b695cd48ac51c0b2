"""Fidelity and projected quantum kernels from batched statevectors.

The fidelity kernel of an embedding ``|φ(x)⟩ = U(x; θ)|0⟩`` is ``k(x, x') = |⟨φ(x)|φ(x')⟩|²``.
PennyLane tools evaluate it with one overlap circuit ``U(x')† U(x)`` per pair; on a statevector
simulator :class:`EmbeddingKernel` instead simulates all ``N`` states in one broadcast circuit and
forms the Gram matrix as one matrix product, ``K = |Ψ_A Ψ_B^H|²``, differentiable w.r.t. ``θ`` and
the bandwidth through torch autograd.

Inputs are multiplied by a bandwidth ``b`` before the embedding (``U(b·x; θ)``): an 8-qubit
embedding of features in ``[0, π]`` is nearly orthogonal for distinct inputs (Gram ≈ identity), and
a bandwidth below 1 restores a useful kernel. The bandwidth may be fixed or trainable.

Example:
    >>> from qkernels.ansatz import get_ansatz
    >>> kern = EmbeddingKernel(get_ansatz("hubregtsen", n_wires=3), bandwidth=0.5, seed=0)
    >>> K = kern.gram(np.random.default_rng(0).uniform(-1, 1, (10, 3)))  # (10, 10) torch tensor
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pennylane as qml
import torch

from qkernels.ansatz import Ansatz
from qkernels.device import make_device, make_shot_device
from qsgd.errors import ConfigError, ProblemTooLargeError

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "EmbeddingKernel",
    "as_input",
    "gram_from_states",
    "bloch_vectors",
    "reduced_density_matrices",
    "projected_gram_from_states",
    "plan_tiles",
]

DEFAULT_MEMORY_BUDGET = 2**30
"""Default memory budget of a Gram computation in bytes (1 GiB)."""

_C = 16  # bytes per complex128 amplitude
_R = 8  # bytes per float64 Gram entry


def as_input(x: Any, ansatz: Ansatz, name: str = "x") -> torch.Tensor:
    """Validate inputs and convert them to a float64 tensor of shape ``(N, n_features)``.

    Raises:
        ValueError: wrong number of dimensions, wrong feature count (expected vs got), NaN/inf.
    """
    t = x if torch.is_tensor(x) else torch.from_numpy(np.array(x, dtype=np.float64))
    t = t.to(torch.float64)
    if t.ndim == 1:
        t = t.reshape(1, -1)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, n_features) (got shape {tuple(t.shape)})")
    ansatz.check_features(t)
    finite = torch.isfinite(t).all(dim=1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten()[:5].tolist()
        raise ValueError(f"{name} must be finite (got NaN or inf in rows {rows})")
    return t


def gram_from_states(states_a: torch.Tensor, states_b: torch.Tensor) -> torch.Tensor:
    """Fidelity Gram matrix ``|Ψ_A Ψ_B^H|²`` of two stacks of statevectors.

    Shape:
        - states_a: ``(N_a, 2**n)`` complex
        - states_b: ``(N_b, 2**n)`` complex
        - output: ``(N_a, N_b)`` real
    """
    return (states_a @ states_b.conj().T).abs() ** 2


def plan_tiles(n_a: int, n_b: int, dim: int, memory_budget: int, symmetric: bool = False) -> int:
    """Rows of ``x_a`` per tile so that a Gram computation stays within ``memory_budget`` bytes.

    Memory model (bytes): states of ``x_b`` kept whole (``N_b·2**n·16``; shared with ``x_a`` when
    symmetric), the output (``N_a·N_b·8``), and per tile of ``t`` rows its states and complex
    overlaps plus their moduli (``t·(2**n + 1.5·N_b)·16``, counted as ``2·N_b``). Autograd graphs need roughly
    twice as much again; :meth:`EmbeddingKernel.gram` without gradients stays within the model.

    Raises:
        ProblemTooLargeError: not even one row fits; the message says how to tile by hand.
    """
    fixed = n_b * dim * _C + n_a * n_b * _R
    per_row = (0 if symmetric else dim * _C) + 2 * n_b * _C
    free = memory_budget - fixed
    if free < per_row:
        # largest square block s with 2 states stacks, s*s output and overlaps
        block = int(
            (-(2 * dim * _C) + math.sqrt((2 * dim * _C) ** 2 + 4 * 24 * memory_budget)) / 48
        )
        need = fixed + per_row
        raise ProblemTooLargeError(
            f"N={n_a}x{n_b} Gram with 2**n={dim} amplitudes needs at least {need} bytes but "
            f"memory_budget_bytes={memory_budget}; raise memory_budget_bytes or tile by hand: "
            f"compute gram(x_a[i:i+s], x_b[j:j+s]) for blocks of s <= {max(block, 1)} rows, "
            "convert each block to numpy and assemble them (np.block)"
        )
    return int(min(n_a, max(1, free // per_row)))


def reduced_density_matrices(states: torch.Tensor, n_wires: int) -> torch.Tensor:
    """One-qubit reduced density matrices of each state (wire 0 = most significant bit).

    Shape:
        - states: ``(N, 2**n_wires)`` complex
        - output: ``(N, n_wires, 2, 2)`` complex
    """
    n = states.shape[0]
    out = []
    for k in range(n_wires):  # loop over wires only; all states at once
        psi = states.reshape(n, 2**k, 2, 2 ** (n_wires - k - 1))
        out.append(torch.einsum("nlar,nlbr->nab", psi, psi.conj()))
    return torch.stack(out, dim=1)


def bloch_vectors(states: torch.Tensor, n_wires: int) -> torch.Tensor:
    """Bloch vectors ``(⟨X⟩, ⟨Y⟩, ⟨Z⟩)`` of every qubit of every state.

    Shape:
        - states: ``(N, 2**n_wires)`` complex
        - output: ``(N, n_wires, 3)`` real
    """
    rho = reduced_density_matrices(states, n_wires)
    r01 = rho[..., 0, 1]
    return torch.stack(
        [2 * r01.real, -2 * r01.imag, (rho[..., 0, 0] - rho[..., 1, 1]).real], dim=-1
    )


def projected_gram_from_states(
    states_a: torch.Tensor, states_b: torch.Tensor, n_wires: int, gamma: float = 1.0
) -> torch.Tensor:
    """Projected quantum kernel of Huang et al. 2021 from one-qubit reduced density matrices.

    ``k(x, x') = exp(-γ Σ_k ||ρ_k(x) - ρ_k(x')||_F²)``, where ``||ρ - ρ'||_F² = ||r - r'||² / 2``
    for Bloch vectors ``r``.

    Shape:
        - states_a: ``(N_a, 2**n)``; states_b: ``(N_b, 2**n)``; output ``(N_a, N_b)``
    """
    ra = bloch_vectors(states_a, n_wires).reshape(states_a.shape[0], -1)
    rb = bloch_vectors(states_b, n_wires).reshape(states_b.shape[0], -1)
    sq = (ra**2).sum(1)[:, None] + (rb**2).sum(1)[None, :] - 2 * ra @ rb.T
    return torch.exp(-gamma * 0.5 * sq.clamp_min(0.0))


class EmbeddingKernel(torch.nn.Module):
    """Trainable fidelity kernel ``|⟨φ(b·x)|φ(b·x')⟩|²`` of an embedding ansatz.

    Args:
        ansatz: the embedding (see :mod:`qkernels.ansatz`).
        params: initial trainable parameters (shape ``ansatz.param_shape``); seeded random if None.
        bandwidth: input scale ``b``.
        trainable_bandwidth: whether ``b`` is trained together with the parameters.
        device: simulator name (``"default.qubit"`` differentiable, ``"lightning.qubit"`` forward only).
        seed: seed of the parameter initialisation.
        memory_budget_bytes: bound on the memory of one Gram computation; tiles are planned to fit.
        state_batch: rows per broadcast circuit when simulating states (bounds circuit memory).

    Shape:
        - x: ``(N, n_features)``
        - states: ``(N, 2**n_wires)`` complex128
        - gram(x_a, x_b): ``(N_a, N_b)`` float64 torch tensor
    """

    def __init__(
        self,
        ansatz: Ansatz,
        params: Any = None,
        *,
        bandwidth: float = 1.0,
        trainable_bandwidth: bool = False,
        device: str = "default.qubit",
        seed: int | None = 0,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        state_batch: int = 4096,
    ) -> None:
        super().__init__()
        if not isinstance(ansatz, Ansatz):
            raise TypeError(f"ansatz must be an Ansatz (got {type(ansatz).__name__})")
        if not (isinstance(bandwidth, int | float) and math.isfinite(bandwidth) and bandwidth > 0):
            raise ConfigError(f"bandwidth must be a positive finite float (got {bandwidth!r})")
        if not isinstance(memory_budget_bytes, int) or memory_budget_bytes <= 0:
            raise ConfigError(
                f"memory_budget_bytes must be a positive int (got {memory_budget_bytes!r})"
            )
        if not isinstance(state_batch, int) or state_batch < 1:
            raise ConfigError(f"state_batch must be a positive int (got {state_batch!r})")
        self.ansatz = ansatz
        self.device_name = device
        make_device(device, ansatz.n_wires)  # validate the name early
        p = ansatz.init_params(seed) if params is None else np.asarray(params, dtype=np.float64)
        if tuple(p.shape) != tuple(ansatz.param_shape):
            raise ValueError(
                f"params must have shape {ansatz.param_shape} for ansatz {ansatz.name!r} "
                f"(got {tuple(p.shape)})"
            )
        self.params = torch.nn.Parameter(
            torch.as_tensor(p, dtype=torch.float64), requires_grad=ansatz.trainable
        )
        self.bandwidth = torch.nn.Parameter(
            torch.tensor(float(bandwidth), dtype=torch.float64), requires_grad=trainable_bandwidth
        )
        self.memory_budget_bytes = memory_budget_bytes
        self.state_batch = state_batch
        self._qnode: Callable[..., Any] | None = None

    # ------------------------------------------------------------------ circuits
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state["_qnode"] = None  # QNodes hold device handles; rebuilt lazily
        return state

    @property
    def n_wires(self) -> int:
        """Number of qubits."""
        return self.ansatz.n_wires

    def _state_qnode(self) -> Callable[..., Any]:
        if self._qnode is None:
            dev, diff_method = make_device(self.device_name, self.n_wires)
            ansatz = self.ansatz

            def circuit(x: torch.Tensor, params: torch.Tensor) -> Any:
                ansatz(x, params)
                return qml.state()

            self._qnode = qml.QNode(circuit, dev, interface="torch", diff_method=diff_method)
        return self._qnode

    def states(self, x: Any) -> torch.Tensor:
        """Statevectors ``|φ(b·x)⟩`` of all rows, simulated in broadcast batches.

        Shape:
            - x: ``(N, n_features)``; output ``(N, 2**n_wires)`` complex128
        """
        xt = as_input(x, self.ansatz)
        qnode = self._state_qnode()
        chunks = []
        for start in range(0, xt.shape[0], self.state_batch):
            xb = xt[start : start + self.state_batch] * self.bandwidth
            psi = qnode(xb, self.params)
            chunks.append(psi.reshape(xb.shape[0], -1).to(torch.complex128))
        return torch.cat(chunks, dim=0)

    def gram(self, x_a: Any, x_b: Any = None) -> torch.Tensor:
        """Exact fidelity Gram matrix, tiled to stay within ``memory_budget_bytes``.

        When no gradient is needed (inside ``torch.no_grad()``, or when neither the parameters
        nor the bandwidth are trainable) the matrix is filled tile by tile into one preallocated
        output with no autograd graph, so memory is the output plus one tile of overlaps and
        grows with the tile, not with ``N²`` complex intermediates; a symmetric Gram then
        computes only its upper block triangle and mirrors it.

        Args:
            x_a: rows of the Gram matrix (e.g. test points).
            x_b: columns (e.g. training points); ``None`` for the symmetric ``K(x_a, x_a)``,
                whose diagonal is then exactly 1.

        Shape:
            - x_a: ``(N_a, n_features)``, x_b: ``(N_b, n_features)``; output ``(N_a, N_b)``

        Raises:
            ProblemTooLargeError: the output alone exceeds the memory budget (says how to tile).
        """
        xa = as_input(x_a, self.ansatz, "x_a")
        xb = xa if x_b is None else as_input(x_b, self.ansatz, "x_b")
        dim = 2**self.n_wires
        rows = plan_tiles(xa.shape[0], xb.shape[0], dim, self.memory_budget_bytes, x_b is None)
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if not needs_grad:
            with torch.no_grad():
                return self._gram_no_grad(xa, None if x_b is None else xb, rows)
        sb = self.states(xb)
        tiles = []
        for start in range(0, xa.shape[0], rows):
            sa = sb[start : start + rows] if x_b is None else self.states(xa[start : start + rows])
            tiles.append(gram_from_states(sa, sb))
        k = torch.cat(tiles, dim=0)
        if x_b is None:  # exact symmetry and unit diagonal of a normalised kernel
            k = 0.5 * (k + k.T)
            k = k - torch.diag(torch.diagonal(k)) + torch.eye(k.shape[0], dtype=k.dtype)
        return k

    def _gram_no_grad(self, xa: torch.Tensor, xb: torch.Tensor | None, rows: int) -> torch.Tensor:
        """The Gram matrix without autograd, written tile by tile into one output tensor."""
        sb = self.states(xa if xb is None else xb)
        out = torch.empty((xa.shape[0], sb.shape[0]), dtype=torch.float64)
        for start in range(0, xa.shape[0], rows):
            stop = min(start + rows, xa.shape[0])
            if xb is None:  # upper block triangle only, mirrored below
                overlap = sb[start:stop] @ sb[start:].conj().T
                out[start:stop, start:] = overlap.abs().square_()
                block = out[start:stop, start:stop]  # symmetric up to rounding: make it exact
                block.copy_(torch.triu(block) + torch.triu(block, 1).T)
                out[stop:, start:stop] = out[start:stop, stop:].T
            else:
                overlap = self.states(xa[start:stop]) @ sb.conj().T
                out[start:stop] = overlap.abs().square_()
            del overlap
        if xb is None:
            out.diagonal().fill_(1.0)
        return out

    forward = gram

    def projected_gram(self, x_a: Any, x_b: Any = None, gamma: float = 1.0) -> torch.Tensor:
        """Projected quantum kernel (Huang et al. 2021) of the same embedding.

        Shape:
            - x_a: ``(N_a, n_features)``, x_b: ``(N_b, n_features)``; output ``(N_a, N_b)``
        """
        if not (isinstance(gamma, int | float) and gamma > 0):
            raise ConfigError(f"gamma must be a positive float (got {gamma!r})")
        sa = self.states(x_a)
        sb = sa if x_b is None else self.states(x_b)
        return projected_gram_from_states(sa, sb, self.n_wires, gamma)

    # ------------------------------------------------------------------ per-pair circuits
    def _overlap_qnode(
        self, shots: int | None, seed: int | None, device: str = "default.qubit"
    ) -> Callable[..., Any]:
        if shots is None:
            dev, _ = make_device(self.device_name, self.n_wires, seed=seed)
        else:
            dev = make_shot_device(device, self.n_wires, seed=seed)
        ansatz = self.ansatz

        def overlap(x1: Any, x2: Any, params: Any) -> Any:
            ansatz(x1, params)
            qml.adjoint(ansatz)(x2, params)
            return qml.probs(wires=range(ansatz.n_wires))

        if shots is None:
            return qml.QNode(overlap, dev, interface="torch")
        return qml.QNode(overlap, dev, interface="torch", shots=shots)

    def pair_kernel(self) -> Callable[[Any, Any], float]:
        """Per-pair reference ``k(x1, x2)``: one overlap circuit ``U(x2)† U(x1)`` per call.

        This is how PennyLane's ``qml.kernels`` evaluate a kernel; use it with
        ``qml.kernels.square_kernel_matrix`` / ``kernel_matrix`` for reference values.
        """
        qnode = self._overlap_qnode(None, None)
        params = self.params.detach()
        b = self.bandwidth.detach()

        def k(x1: Any, x2: Any) -> float:
            a = torch.as_tensor(np.asarray(x1, dtype=np.float64)) * b
            c = torch.as_tensor(np.asarray(x2, dtype=np.float64)) * b
            return float(qnode(a, c, params)[0])

        return k

    @torch.no_grad()
    def shot_gram(
        self,
        x_a: Any,
        x_b: Any = None,
        *,
        shots: int = 1000,
        seed: int | None = 0,
        pair_batch: int = 2048,
        device: str = "default.qubit",
    ) -> np.ndarray:
        """Finite-shot estimate: one overlap circuit per pair, pairs broadcast in batches.

        Each entry is the frequency of the all-zero outcome of ``U(x_j)† U(x_i)|0⟩`` over ``shots``
        samples. For the symmetric case only pairs ``i < j`` are run and the diagonal is 1.
        ``device`` is any installed PennyLane device that samples (``default.qubit`` by default,
        ``lightning.qubit``, ``default.mixed`` or a plugin's); devices without parameter
        broadcasting run the batch as separate circuits (PennyLane splits it).

        Shape:
            - x_a: ``(N_a, n_features)``, x_b: ``(N_b, n_features)``; output ``(N_a, N_b)`` numpy

        Raises:
            ConfigError: non-positive ``shots`` or ``pair_batch``.
            BackendUnavailableError: ``device`` is not installed.
        """
        if not isinstance(shots, int) or isinstance(shots, bool) or shots < 1:
            raise ConfigError(f"shots must be a positive int (got {shots!r})")
        if not isinstance(pair_batch, int) or pair_batch < 1:
            raise ConfigError(f"pair_batch must be a positive int (got {pair_batch!r})")
        xa = as_input(x_a, self.ansatz, "x_a") * self.bandwidth
        xb = xa if x_b is None else as_input(x_b, self.ansatz, "x_b") * self.bandwidth
        if x_b is None:
            ii, jj = np.triu_indices(xa.shape[0], k=1)
        else:
            ii, jj = (
                g.ravel()
                for g in np.meshgrid(np.arange(xa.shape[0]), np.arange(xb.shape[0]), indexing="ij")
            )
        qnode = self._overlap_qnode(shots, seed, device)
        values = np.empty(ii.shape[0])
        for start in range(0, ii.shape[0], pair_batch):
            i = torch.as_tensor(ii[start : start + pair_batch])
            j = torch.as_tensor(jj[start : start + pair_batch])
            probs = qnode(xa[i], xb[j], self.params)
            values[start : start + len(i)] = probs.reshape(len(i), -1)[:, 0].numpy()
        k = np.empty((xa.shape[0], xb.shape[0]))
        if x_b is None:
            k[ii, jj] = values
            k[jj, ii] = values
            np.fill_diagonal(k, 1.0)
        else:
            k[ii, jj] = values
        return k
