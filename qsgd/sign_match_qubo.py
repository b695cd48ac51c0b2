"""The sign-matching formulation of the reference code as one Ising problem.

:func:`sign_match_ising` builds it (direction spins, sign ancillas and binary slack spins;
``docs/method.md`` has the derivation), :func:`sign_match_num_variables` and
:func:`sign_match_slack_bits` count its spins, :func:`sign_match_decode` reads the direction
back. Also importable from :mod:`qsgd.qubo`; the optimiser's update is in
:mod:`qsgd.sign_match`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qsgd.errors import ProblemError, ProblemTooLargeError
from qsgd.ising import IsingBatch
from qsgd.qubo_checks import _as_float_array, _check_finite, _check_matrix, _check_positive, _where

__all__ = [
    "sign_match_ising",
    "sign_match_num_variables",
    "sign_match_slack_bits",
    "sign_match_decode",
]


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
    penalty, X, G = _sign_match_arrays(inputs, grad_out, penalty, resolution, name)
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


def _sign_match_arrays(
    inputs: Any, grad_out: Any, penalty: Any, resolution: Any, name: str | None
) -> tuple[float, np.ndarray, np.ndarray]:
    """:func:`sign_match_ising`'s checked ``penalty``, integer inputs ``X`` (rounded to
    ``resolution`` when given) and ``G``.

    Raises:
        ValueError: a bad ``penalty`` or ``resolution``.
        ProblemError: bad arrays (shape, batch size, non-finite or non-integer inputs).
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
    return penalty, X, G


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
