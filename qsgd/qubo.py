"""Pure, array-level QUBO/Ising builders for QP-SBGD.

Every builder takes arrays (numpy, or CPU torch tensors) and returns an
:class:`~qsgd.ising.IsingBatch`, whose energy convention is::

    E_k(s) = h[k] @ s + 0.5 * s @ J @ s + offset[k]       (J symmetric, zero diagonal)

The derivations, factor conventions, limit cases and variable counts are
written out in ``docs/method.md``. In short:

* :func:`quadratic_model_ising` -- ``E(d) == -eta g.d + (eta^2/2) d.H.d`` exactly.
* :func:`layer_ising` -- one problem per output neuron of a binary linear
  layer ``z = x W^T``, sharing the Gauss-Newton couplings
  ``H = curvature * X^T X / B``; formulations ``"binary_gradient"`` (spins are
  the step direction) and ``"projected"`` (spins are the new weights).
* :func:`sign_match_ising` -- the reference code's formulation: pick ``D`` so
  that the signs of ``X D^T`` agree with the upstream gradient, with sign
  ancillas and binary slack variables (one problem over all weights).
* :func:`split_blocks`, :func:`restrict_to_block`, :func:`solve_blockwise` --
  block-coordinate decomposition for problems larger than a solver accepts.
* :func:`brute_force` -- exact minima by vectorised enumeration (tests, ``exact``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qsgd.blocks import (
    _best_of,  # noqa: F401  (kept importable from here)
    _block_index,  # noqa: F401
    restrict_to_block,
    solve_blockwise,
    solve_blockwise_many,
    split_blocks,
)
from qsgd.errors import ProblemError, ProblemTooLargeError
from qsgd.ising import IsingBatch, from_bqm, to_bqm
from qsgd.qubo_checks import _as_float_array, _check_finite, _check_matrix, _check_positive, _where
from qsgd.sign_match_qubo import (
    _slack_coefficients,  # noqa: F401  (kept importable from here)
    sign_match_decode,
    sign_match_ising,
    sign_match_num_variables,
    sign_match_slack_bits,
)

__all__ = [
    "FORMULATIONS",
    "IsingBatch",
    "to_bqm",
    "from_bqm",
    "quadratic_model_ising",
    "layer_ising",
    "sign_match_ising",
    "sign_match_num_variables",
    "sign_match_slack_bits",
    "sign_match_decode",
    "split_blocks",
    "restrict_to_block",
    "solve_blockwise",
    "solve_blockwise_many",
    "brute_force",
]

#: Formulations accepted by :func:`layer_ising`.
FORMULATIONS: tuple[str, ...] = ("binary_gradient", "projected")


# --------------------------------------------------------------------------- helpers


def _offdiag(a: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=np.float64, copy=True)
    np.fill_diagonal(out, 0.0)
    return out


# --------------------------------------------------------------------------- quadratic model


def quadratic_model_ising(g: Any, H: Any, eta: float, *, name: str | None = None) -> IsingBatch:
    """Ising form of the second-order model ``m(d) = -eta g.d + (eta^2/2) d.H.d``.

    Minimising ``m`` over ``d in {-1,+1}^n`` picks the step direction of the
    update ``w <- w - eta d``. With ``Hs = (H + H^T)/2``:

    * ``h = -eta * g``,
    * ``J = eta^2 * offdiag(Hs)``,
    * ``offset = (eta^2 / 2) * trace(H)`` (``d_i^2 == 1``),

    so ``IsingBatch.energies(d) == m(d)`` exactly (up to rounding).

    Args:
        g: Gradient, shape ``(n,)`` (one problem) or ``(m, n)`` (``m`` problems sharing ``H``).
        H: Curvature (e.g. an exact Hessian), shape ``(n, n)``; need not be symmetric.
        eta: Step size, ``> 0``.
        name: Optional parameter name used in error messages.

    Returns:
        An :class:`IsingBatch` with ``m`` problems (``m == 1`` for a 1-D ``g``).

    Shape:
        g ``(n,)`` or ``(m, n)``; H ``(n, n)``; result ``h`` ``(m, n)``, ``J`` ``(n, n)``.

    Example:
        >>> b = quadratic_model_ising(np.array([1.0, -2.0]), np.eye(2), 0.1)
        >>> brute_force(b)[0].tolist()
        [[1, -1]]
    """
    eta = _check_positive(eta, "eta")
    g = _as_float_array(g, "g", name)
    H = _as_float_array(H, "H", name)
    if g.ndim == 1:
        g = g[None, :]
    _check_matrix(g, "g", name, "(n,) or (m, n)")
    n = g.shape[1]
    if H.shape != (n, n):
        raise ProblemError(
            f"H{_where(name)} must have shape ({n}, {n}) to match g (got shape {H.shape})"
        )
    _check_finite(g, "g", name)
    _check_finite(H, "H", name)
    Hs = 0.5 * (H + H.T)
    J = eta**2 * _offdiag(Hs)
    offset = np.full(g.shape[0], 0.5 * eta**2 * float(np.trace(H)))
    return IsingBatch.from_arrays(-eta * g, J, offset)


# --------------------------------------------------------------------------- layer problems


def _layer_factor(X: np.ndarray, normalize: bool) -> np.ndarray:
    """``X`` itself, or with every non-zero column scaled to unit root-mean-square."""
    if not normalize:
        return X
    rms = np.sqrt(np.mean(X * X, axis=0))
    scale = np.divide(1.0, rms, out=np.zeros_like(rms), where=rms > 0)
    return X * scale[None, :]


def _row_sq(a: np.ndarray) -> np.ndarray:
    """Squared norm of every row, accumulated in float64."""
    if a.dtype == np.float64:
        return np.einsum("mn,mn->m", a, a)
    return np.einsum("mn,mn->m", a, a, dtype=np.float64)


def layer_ising(
    inputs: Any,
    grad_out: Any,
    *,
    eta: float,
    curvature: float = 1.0,
    normalize: bool = False,
    formulation: str = "binary_gradient",
    weights: Any = None,
    damping: float = 0.0,
    name: str | None = None,
    dtype: Any = np.float64,
    gram: Any = None,
    check: bool = True,
) -> IsingBatch:
    """The ``m`` per-neuron Ising problems of a binary linear layer ``z = x W^T``.

    With ``X = inputs`` (``B x n``) and ``G = grad_out = dL/dz`` (``B x m``), the
    weight gradient is ``grad = G^T X`` (``m x n``, row ``j`` is ``g_j = X^T G[:, j]``),
    and the shared Gauss-Newton curvature (unit output curvature, averaged over
    the batch) is::

        F = X                      (normalize=False)
        F = X / rms_columns(X)     (normalize=True: each non-zero column scaled to
                                    root-mean-square 1; zero columns stay zero)
        H = curvature * F^T F / B

    ``normalize`` changes the metric ``H`` only, never the gradient.

    Formulations (see ``docs/method.md``):

    * ``"binary_gradient"``: spins are the direction ``d_j`` of the latent-weight
      step ``w_j <- w_j - eta d_j``; problem ``j`` is
      ``quadratic_model_ising(g_j, H, eta)``: ``h = -eta grad``,
      ``J = eta^2 offdiag(H)``, ``offset = (eta^2/2) tr(H)``.
    * ``"projected"``: ``weights`` are the current binary weights ``B_t`` (exactly
      ±1); with the SGD step ``v = B_t - eta grad``, the spins are the new weight
      row ``b_j`` minimising ``P_j(b) = 0.5 (b - v_j)^T H (b - v_j)
      = curvature/(2B) ||F (b - v_j)||^2``: ``h = -v H``, ``J = offdiag(H)``,
      ``offset = 0.5 tr(H) + 0.5 v_j^T H v_j``.

    ``damping`` (``>= 0``, default 0: no change) adds a Levenberg-Marquardt / proximal
    term: the metric becomes ``H + lam I`` with the *relative* damping
    ``lam = damping * mean(diag(H))`` (``lam = damping`` when ``H == 0``, e.g.
    ``curvature == 0``), so one value means the same in every layer whatever the scale of
    ``H``. Because ``s_i^2 == 1``, ``lam I`` never touches ``J`` or the factor:

    * ``"projected"``: ``P_j(b) = 0.5 (b - v_j)^T (H + lam I) (b - v_j)`` gives
      ``h = -v (H + lam I)`` and ``offset += 0.5 lam (n + |v_j|^2)``. Without it, when
      ``B < n`` every direction in the null space of ``F`` is a tie; ``damping -> inf``
      gives ``b = sign(v)`` (SGD on the binary weights, then sign).
    * ``"binary_gradient"``: the damped model ``-eta g.d + (eta^2/2) d^T (H + lam I) d``
      differs by the constant ``(eta^2/2) lam n`` (``|d|^2 == n``, i.e. the proximal term
      on the latent weights is constant on spins): only ``offset`` changes, never the
      minimiser.

    In both, ``J == factor_scale * offdiag(factor.T @ factor)`` with
    ``factor = F`` and ``factor_scale = eta^2 curvature / B`` (binary_gradient)
    or ``curvature / B`` (projected).

    Args:
        inputs: Layer inputs ``X``, shape ``(B, n)`` (unfolded patches for conv,
            aggregated features for graph conv).
        grad_out: ``dL/dz``, shape ``(B, m)``.
        eta: Step size, ``> 0``.
        curvature: Scale of the Gauss-Newton term, ``>= 0`` (``0`` gives signSGD).
        normalize: Column-normalise ``X`` in the curvature (see above).
        formulation: ``"binary_gradient"`` or ``"projected"``.
        weights: Current binary weights, shape ``(m, n)``, exactly ±1; required by
            ``"projected"``, ignored by ``"binary_gradient"``.
        damping: Relative damping ``>= 0`` of the metric (see above).
        name: Optional layer/parameter name used in error messages.
        dtype: Floating type of the built arrays (``h``, ``J``, ``offset``, ``factor``):
            ``np.float64`` (default) or ``np.float32`` (what the optimiser uses: half the memory
            and single-precision BLAS; energies and minimisers agree with float64 to about
            ``1e-6`` relative, see ``tests/qsgd/test_qubo_precision.py``). Float32 inputs are
            not copied.
        gram: Optional precomputed ``inputs^T inputs`` (``(n, n)``) of exactly these rows,
            e.g. kept from an earlier step whose inputs were identical; the ``B n^2`` product
            is then skipped (``normalize`` rescales it, as the column norms are its diagonal).
        check: Check that ``inputs``, ``grad_out`` (and ``weights``) are finite; pass False
            only when the caller has checked them.

    Returns:
        ``m`` problems of ``n`` spins sharing ``J``, with the low-rank ``factor`` set.

    Shape:
        inputs ``(B, n)``, grad_out ``(B, m)``, weights ``(m, n)``; result ``h`` ``(m, n)``,
        ``J`` ``(n, n)``, ``offset`` ``(m,)``, ``factor`` ``(B, n)``.

    Example:
        >>> X = np.array([[1.0, 0.0], [0.0, 1.0]]); G = np.array([[1.0], [-1.0]])
        >>> brute_force(layer_ising(X, G, eta=0.1))[0].tolist()
        [[1, -1]]
    """
    X, G, eta, curvature, damping, dtype = _layer_arrays(
        inputs, grad_out, eta, curvature, damping, formulation, dtype, name, check
    )
    batch, n = X.shape
    m = G.shape[1]

    # One pass of array products, no loop over neurons: grad = G^T X (m x n), the Gram F^T F
    # (n x n; given, or computed once), the factor F = X (scaled columns with normalize).
    F, gram = _layer_gram(X, gram, normalize, name, dtype)
    grad = G.T @ X  # (m, n): dL/dW
    base = curvature / batch  # H = base * gram
    trace_h = base * float(np.trace(gram, dtype=np.float64))
    lam = damping * (trace_h / n if trace_h > 0 else 1.0)  # absolute damping of the metric

    if formulation == "binary_gradient":
        scale = eta**2 * base
        J = gram * dtype.type(scale)
        np.fill_diagonal(J, 0.0)
        offset = np.full(m, 0.5 * eta**2 * (trace_h + lam * n), dtype=dtype)
        h = grad * dtype.type(-eta)
        return IsingBatch(h=h, J=J, offset=offset, factor=F, factor_scale=float(scale))
    Bt = _projected_weights(weights, (m, n), name, dtype, check)
    v = Bt - dtype.type(eta) * grad  # (m, n)
    vF = v @ F.T  # (m, B): low rank, cheaper than v @ H
    vH = dtype.type(base) * (vF @ F)  # (m, n) == v @ H
    J = gram * dtype.type(base)
    np.fill_diagonal(J, 0.0)
    offset = 0.5 * trace_h + 0.5 * base * _row_sq(vF)
    if lam > 0:
        vH = vH + dtype.type(lam) * v  # v @ (H + lam I)
        offset = offset + 0.5 * lam * (n + _row_sq(v))
    return IsingBatch(
        h=-vH, J=J, offset=offset.astype(dtype, copy=False), factor=F, factor_scale=float(base)
    )


def _layer_arrays(
    inputs: Any,
    grad_out: Any,
    eta: Any,
    curvature: Any,
    damping: Any,
    formulation: str,
    dtype: Any,
    name: str | None,
    check: bool,
) -> tuple[np.ndarray, np.ndarray, float, float, float, np.dtype]:
    """:func:`layer_ising`'s checked arguments: ``X``, ``G`` (as ``dtype`` arrays), ``eta``,
    ``curvature``, ``damping`` and ``dtype``.

    Raises:
        ValueError: a bad formulation, scalar or dtype.
        ProblemError: bad arrays (shape, batch size, non-finite values).
    """
    if formulation not in FORMULATIONS:
        raise ValueError(
            f"formulation must be one of {', '.join(repr(f) for f in FORMULATIONS)} "
            f"(got {formulation!r})"
        )
    eta = _check_positive(eta, "eta")
    curvature = _check_positive(curvature, "curvature", allow_zero=True)
    damping = _check_positive(damping, "damping", allow_zero=True)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64 (got {dtype})")
    X = _as_float_array(inputs, "inputs", name, dtype)
    G = _as_float_array(grad_out, "grad_out", name, dtype)
    _check_matrix(X, "inputs", name, "(batch, fan_in)")
    _check_matrix(G, "grad_out", name, "(batch, fan_out)")
    if G.shape[0] != X.shape[0]:
        raise ProblemError(
            f"grad_out{_where(name)} must have shape ({X.shape[0]}, fan_out) with the batch "
            f"size of inputs (got shape {G.shape}, inputs shape {X.shape})"
        )
    if check:
        _check_finite(X, "inputs", name)
        _check_finite(G, "grad_out", name)
    return X, G, eta, curvature, damping, dtype


def _layer_gram(
    X: np.ndarray, gram: Any, normalize: bool, name: str | None, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """The factor ``F`` and the Gram ``F^T F`` of :func:`layer_ising` (``gram``: ``X^T X``
    given by the caller, rescaled with ``normalize``; None: computed).

    Raises:
        ProblemError: ``gram`` is not ``(n, n)``.
    """
    batch, n = X.shape
    if gram is None:
        F = _layer_factor(X, normalize)
        return F, F.T @ F
    gram = _as_float_array(gram, "gram", name, dtype)
    if gram.shape != (n, n):
        raise ProblemError(
            f"gram{_where(name)} must have shape ({n}, {n}) (got shape {gram.shape})"
        )
    F = X
    if normalize:  # column rms from the Gram's diagonal: mean_b X_bi^2 == gram_ii / B
        rms = np.sqrt(np.diagonal(gram) / batch)
        cols = np.divide(1.0, rms, out=np.zeros_like(rms), where=rms > 0)
        F = X * cols[None, :]
        gram = gram * np.outer(cols, cols)
    return F, gram


def _projected_weights(
    weights: Any, shape: tuple[int, int], name: str | None, dtype: np.dtype, check: bool
) -> np.ndarray:
    """The current binary weights ``B_t`` for formulation ``"projected"``, checked.

    Raises:
        ValueError: no weights given.
        ProblemError: wrong shape, non-finite, or not exactly ±1.
    """
    m, n = shape
    if weights is None:
        raise ValueError(
            f"formulation 'projected' needs weights{_where(name)}: the current binary "
            f"weights of shape ({m}, {n})"
        )
    Bt = _as_float_array(weights, "weights", name, dtype)
    if Bt.shape != (m, n):
        raise ProblemError(
            f"weights{_where(name)} must have shape ({m}, {n}) (fan_out, fan_in) "
            f"(got shape {Bt.shape})"
        )
    if check:
        _check_finite(Bt, "weights", name)
    if not np.all(np.abs(Bt) == 1.0):
        bad = int(np.count_nonzero(np.abs(Bt) != 1.0))
        raise ProblemError(
            f"weights{_where(name)} must be exactly +1 or -1 for formulation 'projected' "
            f"({bad} entries are not)"
        )
    return Bt


# --------------------------------------------------------------------------- brute force


def brute_force(batch: IsingBatch, max_vars: int = 22) -> tuple[np.ndarray, np.ndarray]:
    """Exact minimum of every problem by enumerating all ``2^n`` spin configurations.

    Configurations are enumerated in vectorised chunks; ties go to the first
    configuration in the order where configuration ``c`` has spin ``i`` equal to
    ``+1`` iff bit ``i`` of ``c`` is set.

    Raises:
        ProblemTooLargeError: ``n > max_vars``.

    Shape:
        result spins ``(m, n)`` ``int8`` and energies ``(m,)``.
    """
    m, n = batch.num_problems, batch.num_variables
    if n > max_vars:
        raise ProblemTooLargeError(
            f"brute_force enumerates 2^n configurations: n={n} variables exceeds "
            f"max_vars={max_vars}"
        )
    total = 1 << n
    chunk = int(min(total, max(256, (1 << 21) // max(m, n, 1))))
    bits = np.arange(n, dtype=np.int64)
    best_e = np.full(m, np.inf)
    best_c = np.zeros(m, dtype=np.int64)
    for start in range(0, total, chunk):
        codes = np.arange(start, min(start + chunk, total), dtype=np.int64)
        S = ((codes[:, None] >> bits) & 1).astype(np.float64) * 2.0 - 1.0  # (c, n)
        quad = 0.5 * np.einsum("cn,cn->c", S @ batch.J, S)
        E = batch.h @ S.T + quad[None, :] + batch.offset[:, None]  # (m, c)
        arg = np.argmin(E, axis=1)
        e = E[np.arange(m), arg]
        improve = e < best_e
        best_e = np.where(improve, e, best_e)
        best_c = np.where(improve, codes[arg], best_c)
    spins = (((best_c[:, None] >> bits) & 1) * 2 - 1).astype(np.int8)
    return spins, best_e
