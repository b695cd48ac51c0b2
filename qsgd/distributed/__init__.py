"""Dask as the distributed engine: a layer's QUBO batch solved in chunks on workers.

Where the work runs (``scheduler`` in :class:`qsgd.config.AnnealerConfig`, or an argument):

* ``"local"`` (default): in this process, no Dask needed;
* ``"processes"``: a ``distributed.LocalCluster`` of worker processes on this machine
  (one thread each), started on first use and closed at exit;
* an address such as ``"tcp://10.0.0.5:8786"`` or ``"tls://..."``: an existing Dask scheduler;
* ``scheduler_file``: the JSON file a scheduler writes with ``dask scheduler --scheduler-file``
  (SLURM, dask-jobqueue, dask-mpi); its address is read when the engine connects;
* an existing ``distributed.Client`` (from Python: ``DaskEngine(client=client)``), left open.

How long each wait on the cluster may take (:class:`DaskConfig`, the ``[annealer.dask]`` and
``[kernel.dask]`` tables) — nothing waits without a bound:

* ``connect_timeout`` (10 s): reaching the scheduler, including its answer to the Dask handshake
  (a port that accepts connections but never answers fails after this long, naming the address);
* ``worker_timeout`` (60 s): how long the cluster may have no worker at all while tasks wait
  (a scheduler without workers fails after this long, instead of waiting forever);
* ``timeout`` (3600 s): all results of one batch of tasks (one layer's QUBOs, one Gram matrix).

Every such failure raises :class:`~qsgd.errors.BackendError` naming the address and the setting.

Reproducibility: the results do not depend on the scheduler or on the number of workers.

* Per-problem backends (``neal``, ``tabu``, ``steepest``, ``exact``, ``mock-dwave``, ``dwave``):
  problem ``k`` of a batch solved with seed ``s`` always gets the seed
  ``problem_seeds(s, m)[k]``, exactly as :func:`qsgd.samplers.registry.solve_batch` gives it,
  so the chunked, distributed solve is **bit-identical** to ``solve_batch`` in one process, for
  any chunk size (the energies too below :data:`qsgd.ising.WIDE_DENSE` spins; from there on
  they are one BLAS product per chunk and may differ in the last bits).
* Batch backends (those with their own ``sample_batch``, e.g. ``batched``) draw one random stream per
  call. A batch is cut into chunks of ``chunk_size`` problems; chunk ``c`` gets the seed
  ``problem_seeds(s, num_chunks)[c]`` (the seed itself when there is one chunk). The chunk plan
  depends only on ``m`` and ``chunk_size``, never on the workers, so the same ``chunk_size``
  gives the same samples on every scheduler (``scheduler="local"`` runs the same chunks
  in-process).

Failures: tasks are submitted with ``retries`` (an exception in a task is retried), and a task
whose worker dies is rescheduled by Dask on another worker (up to the scheduler's
``distributed.scheduler.allowed-failures``); results are assembled by chunk index, so none is
lost or counted twice.

Security: a ``tcp://`` scheduler runs whatever code a client sends it, so it belongs on a
private network. Elsewhere use ``tls://`` with ``tls_ca_file``, ``tls_cert`` and ``tls_key``
(PEM files, checked to exist), turned into a ``distributed.security.Security``.

dask and distributed are the optional extra ``distributed``, imported lazily.

Example:
    >>> from qsgd.samplers import get_sampler
    >>> with DaskEngine("processes", n_workers=2) as engine:          # doctest: +SKIP
    ...     res = solve_batch_distributed(get_sampler("neal"), batch, engine=engine, seed=0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qsgd.distributed.engine import DaskEngine, get_engine, resolve_engine, shutdown_engines
from qsgd.distributed.settings import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKER_TIMEOUT,
    INSTALL_HINT,
    DaskConfig,
    _check_file,
    check_scheduler,
    check_target,
    chunk_plan,
    read_scheduler_file,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKER_TIMEOUT",
    "INSTALL_HINT",
    "DaskConfig",
    "DaskEngine",
    "DistributedSampler",
    "SamplerSpec",
    "check_scheduler",
    "check_target",
    "chunk_plan",
    "get_engine",
    "read_scheduler_file",
    "resolve_engine",
    "shutdown_engines",
    "solve_batch_distributed",
    "solve_batches",
    "_check_file",
]

#: Names that need dimod, imported on first use so that the engine alone stays light.
_LAZY = {
    "SamplerSpec": "qsgd.distributed.solve",
    "solve_batches": "qsgd.distributed.solve",
    "solve_batch_distributed": "qsgd.distributed.solve",
    "DistributedSampler": "qsgd.samplers.dask",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qsgd.distributed' has no attribute {name!r}")
    import importlib

    attr = "DaskComposite" if name == "DistributedSampler" else name
    return getattr(importlib.import_module(module), attr)


if TYPE_CHECKING:  # pragma: no cover
    from qsgd.distributed.solve import SamplerSpec, solve_batch_distributed, solve_batches
    from qsgd.samplers.dask import DaskComposite as DistributedSampler
