"""Gram matrices computed in tiles on Dask workers, through qkernels' public kernel API.

The rows of ``x_a`` (and ``x_b``) are cut into tiles of ``tile_rows``. Two kinds of tasks run
on the engine of :mod:`qsgd.distributed`:

1. one task per row tile simulates its statevectors (:meth:`EmbeddingKernel.states`);
2. one task per tile pair ``(I, J)`` forms the block ``K[I, J]`` from two state tiles
   (:func:`qkernels.kernel.gram_from_states`, or :func:`~qkernels.kernel.projected_gram_from_states`).

States stay on the workers between the two steps (Dask moves a state tile to the worker that
needs it); only the ``(tile, tile)`` blocks come back. Each state is simulated once, and memory
per task is bounded by the tile size. For a symmetric Gram matrix only the blocks ``I <= J`` are
computed; the matrix is then symmetrised and its diagonal set to 1 exactly as
:meth:`EmbeddingKernel.gram` does, so the result equals the in-process one to rounding
(``1e-12``). The result is a numpy array without autograd (use it for evaluation and SVMs;
training uses :meth:`EmbeddingKernel.gram`).

Where the tiles run and how long the waits may be come from ``scheduler`` and the
``[kernel.dask]`` table (:class:`qsgd.distributed.DaskConfig`: ``scheduler_file``,
``connect_timeout``, ``worker_timeout``, ``timeout`` for the whole matrix, TLS files, and
``chunk_size`` as the default ``tile_rows``), or from an existing ``distributed.Client``.

Example:
    >>> from qkernels.ansatz import get_ansatz
    >>> from qkernels.kernel import EmbeddingKernel
    >>> kern = EmbeddingKernel(get_ansatz("angle", n_wires=2), seed=0)
    >>> K = distributed_gram(kern, np.zeros((5, 2)), tile_rows=2)   # scheduler="local"
    >>> K.shape
    (5, 5)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch

from qkernels.kernel import (
    EmbeddingKernel,
    as_input,
    gram_from_states,
    projected_gram_from_states,
)
from qsgd.distributed import DaskConfig, DaskEngine, chunk_plan, resolve_engine
from qsgd.errors import ConfigError

__all__ = ["DEFAULT_TILE_ROWS", "distributed_gram", "tile_ranges"]

DEFAULT_TILE_ROWS = 128
"""Rows per tile when no ``tile_rows`` is given."""


def tile_ranges(n: int, tile_rows: int) -> list[tuple[int, int]]:
    """Half-open row ranges of ``tile_rows`` rows (the last may be shorter):
    :func:`qsgd.distributed.chunk_plan` with the message naming ``tile_rows``.

    Raises:
        ConfigError: ``tile_rows`` is not a positive int.

    Example:
        >>> tile_ranges(5, 2)
        [(0, 2), (2, 4), (4, 5)]
    """
    return chunk_plan(n, tile_rows, name="tile_rows")


def _states(kernel: EmbeddingKernel, x: torch.Tensor) -> torch.Tensor:
    """Task: statevectors of one row tile (copied first: see :func:`_block`)."""
    x = x.clone()
    with torch.no_grad():
        return kernel.states(x)


def _block(kind: str, n_wires: int, gamma: float, sa: torch.Tensor, sb: torch.Tensor) -> np.ndarray:
    """Task: one Gram block from two state tiles.

    The tiles are copied first: a tile received from another worker can sit in a buffer that Dask
    deserialised at an odd address (``data_ptr() % 16 == 3`` seen), and torch's einsum on such a
    complex tensor crashed the worker process (segmentation fault, 2-worker LocalCluster).
    """
    sa, sb = sa.clone(), sb.clone()
    with torch.no_grad():
        if kind == "fidelity":
            return gram_from_states(sa, sb).numpy()
        return projected_gram_from_states(sa, sb, n_wires, gamma).numpy()


def distributed_gram(
    kernel: EmbeddingKernel,
    x_a: Any,
    x_b: Any = None,
    *,
    kind: Literal["fidelity", "projected"] = "fidelity",
    gamma: float = 1.0,
    tile_rows: int | None = None,
    scheduler: str = "local",
    engine: DaskEngine | None = None,
    client: Any = None,
    dask: DaskConfig | Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Gram matrix of ``kernel`` computed tile by tile on a Dask engine.

    Args:
        kernel: The embedding kernel (pickled to the workers once).
        x_a: Rows of the Gram matrix.
        x_b: Columns; ``None`` for the symmetric ``K(x_a, x_a)``.
        kind: ``"fidelity"`` (:meth:`EmbeddingKernel.gram`) or ``"projected"``
            (:meth:`EmbeddingKernel.projected_gram`).
        gamma: Width of the projected kernel.
        tile_rows: Rows per tile (default ``dask.chunk_size``, else :data:`DEFAULT_TILE_ROWS`).
        scheduler: ``"local"``, ``"processes"`` or a scheduler address (when neither ``engine``
            nor ``client`` is given).
        engine: An explicit :class:`~qsgd.distributed.DaskEngine`.
        client: An existing ``distributed.Client`` to run on (left open).
        dask: Engine settings (:class:`~qsgd.distributed.DaskConfig` or a mapping of its keys);
            ignored when ``engine`` is given.

    Returns:
        The Gram matrix as float64 numpy array.

    Raises:
        ConfigError: bad ``kind``, ``gamma``, ``tile_rows`` or ``dask`` settings.
        BackendError: no scheduler, no worker or no result within the configured timeouts.
        ValueError: inputs with the wrong feature count or NaN (from :func:`as_input`).

    Shape:
        x_a ``(N_a, n_features)``, x_b ``(N_b, n_features)``; output ``(N_a, N_b)``
        (``(N_a, N_a)`` when ``x_b`` is None).
    """
    if kind not in ("fidelity", "projected"):
        raise ConfigError(f"kind must be 'fidelity' or 'projected' (got {kind!r})")
    if not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and gamma > 0):
        raise ConfigError(f"gamma must be a positive float (got {gamma!r})")
    if not isinstance(kernel, EmbeddingKernel):
        raise TypeError(f"kernel must be an EmbeddingKernel (got {type(kernel).__name__})")
    symmetric = x_b is None
    xa = as_input(x_a, kernel.ansatz, "x_a").detach()
    xb = xa if symmetric else as_input(x_b, kernel.ansatz, "x_b").detach()
    settings = DaskConfig.coerce(dask)
    rows = tile_rows if tile_rows is not None else settings.chunk_size or DEFAULT_TILE_ROWS
    ta = tile_ranges(xa.shape[0], rows)
    tb = ta if symmetric else tile_ranges(xb.shape[0], rows)
    engine = resolve_engine(scheduler, engine=engine, client=client, dask=settings)
    pairs = [(i, j) for i in range(len(ta)) for j in range(len(tb)) if not symmetric or i <= j]
    args = (kind, kernel.n_wires, float(gamma))
    if engine.is_local:
        sa = [_states(kernel, xa[s:e]) for s, e in ta]
        sb = sa if symmetric else [_states(kernel, xb[s:e]) for s, e in tb]
        blocks = [_block(*args, sa[i], sb[j]) for i, j in pairs]
    else:
        kern_f = engine.share(kernel)
        fa = [engine.submit(_states, kern_f, xa[s:e]) for s, e in ta]
        fb = fa if symmetric else [engine.submit(_states, kern_f, xb[s:e]) for s, e in tb]
        futs = [engine.submit(_block, *args, fa[i], fb[j]) for i, j in pairs]
        try:
            blocks = engine.gather(futs, key="distributed_gram")
        finally:
            for f in (*futs, *fa, *fb, kern_f):
                f.release()
    K = np.empty((xa.shape[0], xb.shape[0]))
    for (i, j), blk in zip(pairs, blocks, strict=True):
        (a0, a1), (b0, b1) = ta[i], tb[j]
        K[a0:a1, b0:b1] = blk
        if symmetric and i != j:
            K[b0:b1, a0:a1] = blk.T
    if symmetric and kind == "fidelity":  # as EmbeddingKernel.gram: exact symmetry, unit diagonal
        K = 0.5 * (K + K.T)
        np.fill_diagonal(K, 1.0)
    return K
