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

from collections.abc import Callable
from typing import Any

import numpy as np

from qsgd.errors import ProblemError, ProblemTooLargeError
from qsgd.ising import IsingBatch, from_bqm, to_bqm

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


# --------------------------------------------------------------------------- validation


def _where(name: str | None) -> str:
    return f" of {name!r}" if name else ""


def _as_float_array(value: Any, arg: str, name: str | None, dtype: Any = np.float64) -> np.ndarray:
    """``value`` as a ``dtype`` array (torch tensors are detached and moved to CPU; no copy when
    the value already has that dtype)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ProblemError(
            f"{arg}{_where(name)} must be a numeric array (got {type(value).__name__})"
        ) from exc
    return arr


def _check_finite(arr: np.ndarray, arg: str, name: str | None) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ProblemError(
            f"{arg}{_where(name)} contains {bad} non-finite value(s) (NaN or inf) "
            f"out of {arr.size}; expected all finite"
        )


def _check_matrix(arr: np.ndarray, arg: str, name: str | None, dims: str) -> None:
    if arr.ndim != 2:
        raise ProblemError(
            f"{arg}{_where(name)} must have shape {dims} (got shape {arr.shape}, ndim {arr.ndim})"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ProblemError(
            f"{arg}{_where(name)} is empty: shape {arr.shape}, expected {dims} with both sizes >= 1"
        )


def _check_positive(value: Any, arg: str, *, allow_zero: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{arg} must be a real number (got {value!r})") from exc
    ok = np.isfinite(x) and (x >= 0 if allow_zero else x > 0)
    if not ok:
        what = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{arg} must be {what} (got {value!r})")
    return x


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
    batch, n = X.shape
    m = G.shape[1]

    # One pass of array products, no loop over neurons: grad = G^T X (m x n), the Gram F^T F
    # (n x n; given, or computed once), the factor F = X (scaled columns with normalize).
    if gram is None:
        F = _layer_factor(X, normalize)
        gram = F.T @ F
    else:
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

    # projected
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


# --------------------------------------------------------------------------- sign matching


def sign_match_slack_bits(input_bound: int) -> int:
    """Slack bits per constraint of :func:`sign_match_ising`: ``bit_length(2 * input_bound)``.

    ``input_bound`` is ``S = max_b sum_i |x_bi|`` (``fan_in`` for inputs in ``[-1, 1]``).
    """
    if int(input_bound) != input_bound or input_bound < 0:
        raise ValueError(f"input_bound must be a non-negative int (got {input_bound!r})")
    return max(1, int(2 * int(input_bound)).bit_length())


def sign_match_num_variables(
    batch: int, fan_in: int, fan_out: int, *, input_bound: int | None = None
) -> int:
    """Number of spins of :func:`sign_match_ising`.

    ``fan_out*fan_in`` direction spins + ``batch*fan_out`` sign ancillas +
    ``batch*fan_out*K`` slack spins with ``K = bit_length(2*S)``, where
    ``S = max(fan_in, max_b sum_i |x_bi|)`` is ``fan_in`` whenever ``|x| <= 1``
    (binary activations ±1 or {0,1}); pass ``input_bound`` for larger integer inputs.
    So ``N = fan_out * (fan_in + batch * (1 + K))``.

    Example:
        >>> sign_match_num_variables(16, 128, 128)
        36864
    """
    for arg, val in (("batch", batch), ("fan_in", fan_in), ("fan_out", fan_out)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{arg} must be a positive int (got {val!r})")
    bound = fan_in if input_bound is None else max(int(fan_in), int(input_bound))
    k = sign_match_slack_bits(bound)
    return int(fan_out * (fan_in + batch * (1 + k)))


def _slack_coefficients(upper: int) -> np.ndarray:
    """Integer coefficients ``c`` whose 0/1 combinations are exactly ``{0, ..., upper}``.

    Powers of two ``1, 2, ..., 2^(K-2)`` and a last coefficient
    ``upper - (2^(K-1) - 1)``, with ``K = bit_length(upper)`` (``[1]`` for ``upper <= 1``).
    """
    k = max(1, int(upper).bit_length())
    if k == 1:
        return np.ones(1)
    c = 2.0 ** np.arange(k - 1)
    return np.append(c, float(upper) - (2 ** (k - 1) - 1))


def sign_match_ising(
    inputs: Any,
    grad_out: Any,
    *,
    penalty: float = 2.0,
    weighted: bool = True,
    resolution: float | None = None,
    max_vars: int = 4096,
    name: str | None = None,
) -> IsingBatch:
    """The sign-matching formulation of the reference code, as one Ising problem.

    Choose ``D`` (``fan_out x fan_in``, ±1; the update is ``W <- W - eta D``) so that
    the signs of the pre-activation changes ``z = X D^T`` agree with the targets
    ``t = sign(grad_out)`` (``t = +1`` where the gradient is 0), i.e. minimise the
    weighted count of mismatches ``sum_bj w_bj [sign(z_bj) != t_bj]`` with
    ``sign(0) = +1`` and ``w = |G| / max|G|`` (``weighted=True``) or ``w = [G != 0]``.

    Encoding (all integer; ``docs/method.md`` has the derivation): a sign
    ancilla ``y_bj`` per sample and neuron; ``b = (1 + t y)/2`` says "the sign
    matches". The constraint ``b = 1  =>  t z - theta >= 0`` (``theta = 0`` for
    ``t = +1``, ``1`` for ``t = -1``) becomes the equality
    ``t z - theta + M_b (1 - b) - s = 0`` with big-M ``M_b = S_b + theta``,
    ``S_b = sum_i |x_bi|``, and a slack ``s in {0..2S}`` written with ``K``
    binary spins whose coefficients represent every integer of that range
    exactly (for every fan-in). Energy::

        E = penalty * sum_bj r_bj^2 + sum_bj w_bj (1 - b_bj),     r = residual above

    For fixed ``D`` the minimum over ancillas equals the weighted mismatch count
    exactly whenever ``penalty >= 1 (= max w)``; a satisfied constraint costs 0.

    Spin order: ``D`` row-major (``fan_out*fan_in``), then ``y`` (``batch*fan_out``,
    row-major ``(b, j)``), then slack (``batch*fan_out*K``, row-major ``(b, j, k)``).
    ``factor`` is the residual matrix ``A`` (``r = A s + c``) and
    ``factor_scale = 2 * penalty``.

    Args:
        inputs: ``X``, shape ``(B, fan_in)``, integer-valued (binary activations ±1 or
            {0,1}); for real inputs pass ``resolution``.
        grad_out: ``dL/dz``, shape ``(B, fan_out)``.
        penalty: Constraint penalty, ``>= 1``.
        weighted: Weight mismatches by ``|G| / max|G|`` (like the reference's
            ``||Y_spin - Y||^2``); else count them (entries with ``G == 0`` never count).
        resolution: If given, inputs are replaced by ``round(X / resolution)`` (the
            encoding is exact for the rounded inputs).
        max_vars: Refuse problems with more spins (the coupling matrix is dense).
        name: Optional layer name used in error messages.

    Returns:
        One problem of :func:`sign_match_num_variables` spins.

    Raises:
        ProblemTooLargeError: more than ``max_vars`` spins.

    Shape:
        inputs ``(B, n)``, grad_out ``(B, m)``; result ``h`` ``(1, N)``, ``J`` ``(N, N)``.
    """
    penalty = _check_positive(penalty, "penalty")
    if penalty < 1.0:
        raise ValueError(
            f"penalty must be >= 1 (the largest mismatch weight) for an exact encoding "
            f"(got {penalty!r})"
        )
    X = _as_float_array(inputs, "inputs", name)
    G = _as_float_array(grad_out, "grad_out", name)
    _check_matrix(X, "inputs", name, "(batch, fan_in)")
    _check_matrix(G, "grad_out", name, "(batch, fan_out)")
    if G.shape[0] != X.shape[0]:
        raise ProblemError(
            f"grad_out{_where(name)} must have shape ({X.shape[0]}, fan_out) with the batch "
            f"size of inputs (got shape {G.shape}, inputs shape {X.shape})"
        )
    _check_finite(X, "inputs", name)
    _check_finite(G, "grad_out", name)
    if resolution is not None:
        res = _check_positive(resolution, "resolution")
        X = np.round(X / res)
    elif not np.all(X == np.round(X)):
        raise ProblemError(
            f"inputs{_where(name)} must be integer-valued for sign_match (binary activations "
            f"±1 or {{0,1}}); pass resolution=q to round inputs/q to integers"
        )
    batch, n = X.shape
    m = G.shape[1]
    S_b = np.abs(X).sum(axis=1)  # (B,)
    S = int(max(n, int(S_b.max())))
    total = sign_match_num_variables(batch, n, m, input_bound=S)
    if total > max_vars:
        raise ProblemTooLargeError(
            f"sign_match problem has {total} spins (batch={batch}, fan_in={n}, fan_out={m}), "
            f"more than max_vars={max_vars}"
        )
    coeffs = _slack_coefficients(2 * S)
    K = coeffs.size
    U = float(coeffs.sum())  # == 2S

    t = np.where(G < 0, -1.0, 1.0)  # (B, m)
    absg = np.abs(G)
    if weighted:
        top = absg.max()
        w = absg / top if top > 0 else np.zeros_like(absg)
    else:
        w = (absg > 0).astype(np.float64)
    theta = np.where(t < 0, 1.0, 0.0)  # (B, m)
    M = S_b[:, None] + theta  # (B, m)

    n_d = m * n
    n_y = batch * m
    P = batch * m  # one residual per (b, j)
    rows = np.arange(P).reshape(batch, m)
    A = np.zeros((P, total))
    # d spins: r_bj += t_bj * x_bi * d_ji
    d_index = np.arange(n_d).reshape(m, n)  # d_ji -> column
    A[rows[:, :, None], d_index[None, :, :]] = t[:, :, None] * X[:, None, :]
    # sign ancillas: r_bj += -(M_bj t_bj / 2) y_bj
    y_index = n_d + rows
    A[rows, y_index] = -0.5 * M * t
    # slack spins: r_bj += -(c_k / 2) sigma_bjk
    s_index = n_d + n_y + rows[:, :, None] * K + np.arange(K)
    A[rows[:, :, None], s_index] = -0.5 * coeffs
    c0 = (-theta + 0.5 * M - 0.5 * U).reshape(P)

    gram = A.T @ A
    scale = 2.0 * penalty
    J = scale * gram
    np.fill_diagonal(J, 0.0)
    h = 2.0 * penalty * (c0 @ A)
    # mismatch term sum w (1 - t y) / 2
    h[y_index.reshape(P)] += -0.5 * (w * t).reshape(P)
    offset = penalty * (float(c0 @ c0) + float(np.trace(gram))) + 0.5 * float(w.sum())
    return IsingBatch(h=h[None, :], J=J, offset=np.array([offset]), factor=A, factor_scale=scale)


def sign_match_decode(spins: np.ndarray, fan_in: int, fan_out: int) -> np.ndarray:
    """The direction ``D`` (``(fan_out, fan_in)``, or ``(..., fan_out, fan_in)``) from sign_match spins.

    Shape:
        spins ``(..., N)`` -> ``(..., fan_out, fan_in)``.
    """
    s = np.asarray(spins)
    if s.shape[-1] < fan_in * fan_out:
        raise ProblemError(
            f"spins must have at least fan_out*fan_in = {fan_in * fan_out} entries in the last "
            f"axis (got shape {s.shape})"
        )
    return s[..., : fan_in * fan_out].reshape(*s.shape[:-1], fan_out, fan_in)


# --------------------------------------------------------------------------- blocks


def split_blocks(
    n: int, max_block_vars: int, *, rng: np.random.Generator | int | None = None
) -> list[np.ndarray]:
    """Split variables ``0..n-1`` into ``ceil(n / max_block_vars)`` blocks of near-equal size.

    Blocks are contiguous ranges by default; with ``rng`` (a Generator or a seed)
    the variables are randomly permuted first (each block is returned sorted).

    Example:
        >>> [b.tolist() for b in split_blocks(5, 2)]
        [[0, 1], [2, 3], [4]]
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int (got {n!r})")
    if (
        not isinstance(max_block_vars, (int, np.integer))
        or isinstance(max_block_vars, bool)
        or max_block_vars < 1
    ):
        raise ValueError(f"max_block_vars must be a positive int (got {max_block_vars!r})")
    order = np.arange(n)
    if rng is not None:
        order = np.random.default_rng(rng).permutation(n)
    k = -(-int(n) // int(max_block_vars))
    return [np.sort(b) if rng is not None else b for b in np.array_split(order, k)]


def _block_index(block: Any, n: int) -> np.ndarray:
    idx = np.asarray(block)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ProblemError(
            f"block must be a non-empty 1-D array of variable indices (got {idx.dtype} shape {idx.shape})"
        )
    if idx.min() < 0 or idx.max() >= n or np.unique(idx).size != idx.size:
        raise ProblemError(f"block must hold distinct indices in [0, {n}) (got {idx.tolist()})")
    return idx


def restrict_to_block(batch: IsingBatch, spins: Any, block: Any) -> IsingBatch:
    """The problems over the spins of ``block`` with all other spins fixed to ``spins``.

    Fields absorb the couplings to the fixed spins, ``h_B + s_R J[R, B]``; the
    offset absorbs the energy of the fixed spins, so for any block assignment
    ``x``, ``restricted.energies(x) == batch.energies(spins with block set to x)``.
    The low-rank factor is restricted too (``factor[:, block]``).

    Shape:
        spins ``(m, n)`` (or ``(n,)`` shared by all problems); block ``(k,)``; result ``(m, k)``.
    """
    m, n = batch.num_problems, batch.num_variables
    idx = _block_index(block, n)
    s = np.asarray(spins, dtype=np.float64)
    if s.ndim == 1:
        s = np.broadcast_to(s, (m, n))
    if s.shape != (m, n):
        raise ProblemError(f"spins must have shape ({m}, {n}) (got shape {s.shape})")
    rest = np.ones(n, dtype=bool)
    rest[idx] = False
    s_rest = np.where(rest[None, :], s, 0.0)  # fixed spins, block zeroed
    field = s_rest @ batch.J  # (m, n): sum over fixed spins only
    h_block = batch.h[:, idx] + field[:, idx]
    offset = (
        batch.offset
        + np.einsum("mn,mn->m", batch.h, s_rest)
        + 0.5 * np.einsum("mn,mn->m", field, s_rest)
    )
    J_block = batch.J[np.ix_(idx, idx)]
    factor = None if batch.factor is None else batch.factor[:, idx]
    return IsingBatch(
        h=h_block, J=J_block, offset=offset, factor=factor, factor_scale=batch.factor_scale
    )


def _best_of(result: Any, sub: IsingBatch) -> np.ndarray:
    """Best spins ``(m, k)`` from a solver's return value (BatchResult-like or array)."""
    if hasattr(result, "best"):
        result = result.best
    arr = np.asarray(result)
    m, k = sub.num_problems, sub.num_variables
    if arr.ndim == 3 and arr.shape[0] == m and arr.shape[2] == k:
        e = sub.energies(arr)
        arr = arr[np.arange(m), np.argmin(e, axis=1)]
    if arr.shape != (m, k):
        raise ProblemError(
            f"solve must return spins of shape ({m}, {k}) or ({m}, reads, {k}), or an object "
            f"with .best (got shape {arr.shape})"
        )
    if not np.all(np.abs(arr) == 1):
        raise ProblemError("solve must return spins that are exactly +1 or -1")
    return arr.astype(np.int8)


def solve_blockwise(
    batch: IsingBatch,
    solve: Callable[[IsingBatch], Any],
    max_block_vars: int,
    initial: Any,
    *,
    sweeps: int = 1,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Block-coordinate descent: solve each block with the other spins fixed.

    For ``sweeps`` passes over :func:`split_blocks` ``(n, max_block_vars, rng=rng)``,
    each block's restricted problems (:func:`restrict_to_block`) go to ``solve``;
    a problem's block is replaced only where the solver's spins do not raise
    its energy, so energies never increase, whatever the solver.

    Args:
        batch: The ``m`` problems.
        solve: ``solve(IsingBatch) -> BatchResult`` (or anything with ``.best``, or an
            array of spins ``(m, k)`` / ``(m, reads, k)``).
        max_block_vars: Largest block the solver accepts.
        initial: Starting spins, ``(m, n)`` or ``(n,)``, exactly ±1 (e.g. ``sign(-h)``).
        sweeps: Passes over all blocks, ``>= 1``.
        rng: If given, blocks are random (re-drawn each sweep from this generator).

    Returns:
        ``(spins, energies)``: ``int8`` ``(m, n)`` and ``(m,)``.

    Shape:
        initial ``(m, n)`` or ``(n,)``; spins ``(m, n)``; energies ``(m,)``.
    """
    if not isinstance(sweeps, (int, np.integer)) or isinstance(sweeps, bool) or sweeps < 1:
        raise ValueError(f"sweeps must be a positive int (got {sweeps!r})")
    m, n = batch.num_problems, batch.num_variables
    s = np.asarray(initial, dtype=np.float64)
    if s.ndim == 1:
        s = np.broadcast_to(s, (m, n))
    if s.shape != (m, n):
        raise ProblemError(f"initial must have shape ({m}, {n}) or ({n},) (got shape {s.shape})")
    if not np.all(np.abs(s) == 1):
        raise ProblemError("initial must hold spins that are exactly +1 or -1")
    spins = s.astype(np.int8)
    energies = batch.energies(spins)
    gen = None if rng is None else np.random.default_rng(rng)
    for _ in range(int(sweeps)):
        for block in split_blocks(n, max_block_vars, rng=gen):
            sub = restrict_to_block(batch, spins, block)
            cand = _best_of(solve(sub), sub)
            e_new = sub.energies(cand)
            better = e_new <= energies
            spins[np.ix_(better, block)] = cand[better]
            energies = np.where(better, e_new, energies)
    return spins, batch.energies(spins)


def solve_blockwise_many(
    batches: list[IsingBatch],
    solve_many: Callable[[list[IsingBatch], list[int]], list[Any]],
    max_block_vars: int,
    initials: list[Any],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`solve_blockwise` (one sweep, contiguous blocks) of several batches in lock step.

    Round ``r`` restricts every batch to its ``r``-th block and hands all those problems to
    one ``solve_many`` call (e.g. a QPU composite that packs problems of several layers into
    each call), so a step needs as many rounds as its largest layer has blocks instead of one
    solve per block of every layer. Each batch follows exactly the descent of
    :func:`solve_blockwise`: its blocks in order, each replaced only where the energy does
    not increase.

    Args:
        batches: The batches (sizes may differ).
        solve_many: ``solve_many(subs, which) -> [result, ...]``: the restricted problems of the
            batches ``which`` (indices into ``batches``; a batch with fewer blocks drops out
            of the later rounds), one result each, as ``solve`` returns for
            :func:`solve_blockwise`.
        max_block_vars: Largest block the solver accepts.
        initials: Starting spins per batch (``(m, n)`` or ``(n,)``, exactly ±1).

    Returns:
        ``[(spins, energies), ...]`` per batch: ``int8`` ``(m, n)`` and ``(m,)``.
    """
    if len(initials) != len(batches):
        raise ValueError(
            f"initials must have one entry per batch ({len(batches)}) (got {len(initials)})"
        )
    spins, energies, blocks = [], [], []
    for batch, initial in zip(batches, initials, strict=True):
        m, n = batch.num_problems, batch.num_variables
        s = np.asarray(initial, dtype=np.float64)
        if s.ndim == 1:
            s = np.broadcast_to(s, (m, n))
        if s.shape != (m, n):
            raise ProblemError(
                f"initial must have shape ({m}, {n}) or ({n},) (got shape {s.shape})"
            )
        if not np.all(np.abs(s) == 1):
            raise ProblemError("initial must hold spins that are exactly +1 or -1")
        spins.append(s.astype(np.int8))
        energies.append(batch.energies(spins[-1]))
        blocks.append(split_blocks(n, max_block_vars))
    for r in range(max(len(b) for b in blocks)):
        active = [i for i in range(len(batches)) if r < len(blocks[i])]
        subs = [restrict_to_block(batches[i], spins[i], blocks[i][r]) for i in active]
        results = solve_many(subs, active)
        if len(results) != len(subs):
            raise ProblemError(
                f"solve_many must return one result per batch ({len(subs)}) (got {len(results)})"
            )
        for i, sub, res in zip(active, subs, results, strict=True):
            cand = _best_of(res, sub)
            e_new = sub.energies(cand)
            better = e_new <= energies[i]
            spins[i][np.ix_(better, blocks[i][r])] = cand[better]
            energies[i] = np.where(better, e_new, energies[i])
    return [(s, b.energies(s)) for s, b in zip(spins, batches, strict=True)]


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
