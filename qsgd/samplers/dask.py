"""The ``"dask"`` composite: any backend's batches solved in chunk tasks on a Dask cluster.

Where the chunks run, the timeouts and the seeding are described in :mod:`qsgd.distributed`.

Example:
    >>> from qsgd.samplers.registry import compose, get_sampler
    >>> compose(get_sampler("neal"), [("dask", {"scheduler": "local"})]).children[0].backend_name
    'neal'
"""

from __future__ import annotations

from typing import Any

import dimod

from qsgd.distributed import engine as engine_module
from qsgd.distributed.engine import DaskEngine
from qsgd.distributed.settings import DEFAULT_CHUNK_SIZE, chunk_plan
from qsgd.distributed.solve import SamplerLike, _as_sampler, solve_batch_distributed
from qsgd.errors import ConfigError
from qsgd.ising import IsingBatch
from qsgd.samplers.base import BatchResult, Sampler

__all__ = ["DaskComposite"]


class DaskComposite(Sampler, dimod.ComposedSampler):
    """Composite: its :meth:`sample_batch` solves the batch in chunk tasks on a Dask engine.

    :func:`qsgd.samplers.registry.solve_batch` (and so the QP-SBGD optimizer) calls
    ``sample_batch``, so wrapping a backend is all it takes to distribute a training run;
    :meth:`qsgd.config.AnnealerConfig.make_sampler` does it when ``scheduler`` is not
    ``"local"`` or ``dask.scheduler_file`` is set. Registered as the composite ``"dask"``
    (:func:`qsgd.samplers.registry.compose`); ``qsgd.distributed.DistributedSampler`` is the
    same class under its earlier name.

    Args:
        inner: The backend: a :class:`SamplerSpec` or name (built once per worker), or a sampler.
        scheduler: ``"processes"`` (the default unless ``scheduler_file`` or ``client`` is
            given), an address, or ``"local"`` (chunks in-process).
        engine: An explicit :class:`DaskEngine`.
        client: An existing ``distributed.Client`` to run on (left open).
        chunk_size: Problems per task (default :data:`DEFAULT_CHUNK_SIZE`).
        **engine_options: :class:`DaskEngine` keywords (``scheduler_file``, ``timeout``,
            ``connect_timeout``, ``worker_timeout``, ``tls_*``, ...), checked here; the engine
            itself is created (and the cluster contacted) on the first solve.

    Raises:
        ConfigError: a bad option, or two of scheduler / scheduler_file / client / engine.

    Shape:
        ``sample_batch`` returns ``samples`` ``(m, reads, n)`` and ``energies`` ``(m, reads)``.

    Example:
        >>> DaskComposite("neal", scheduler="tcp://10.0.0.5:8786", timeout=600).properties
        {'inner': 'neal', 'scheduler': 'tcp://10.0.0.5:8786', 'chunk_size': 16}
    """

    def __init__(
        self,
        inner: SamplerLike,
        *,
        scheduler: str | None = None,
        engine: DaskEngine | None = None,
        client: Any = None,
        chunk_size: int | None = None,
        **engine_options: Any,
    ) -> None:
        self.inner = inner
        self._local = _as_sampler(inner)
        if engine is not None and (client is not None or engine_options):
            raise ConfigError(
                "give either engine or client/engine options to DaskComposite "
                f"(got engine={engine!r} and {sorted(engine_options) or ['client']})"
            )
        if scheduler is None:
            elsewhere = client is not None or engine_options.get("scheduler_file") is not None
            scheduler = "local" if elsewhere else "processes"
        if engine is None:  # validates everything, connects nothing
            self.scheduler = DaskEngine(scheduler, client=client, **engine_options).scheduler
        else:
            self.scheduler = engine.scheduler
        self._scheduler = scheduler
        self.engine = engine
        self.client = client
        self.engine_options = dict(engine_options)
        if chunk_size is not None:
            chunk_plan(1, chunk_size)  # validates
        self.chunk_size = chunk_size
        self.backend_name = str(
            getattr(self._local, "backend_name", None) or type(self._local).__name__
        )

    @property
    def children(self) -> list[dimod.Sampler]:
        """The backend as built in this process (workers build their own from a spec)."""
        return [self._local]

    @property
    def parameters(self) -> dict[str, list]:
        return dict(self._local.parameters)

    @property
    def properties(self) -> dict[str, Any]:
        return {
            "inner": self.backend_name,
            "scheduler": self.scheduler,
            "chunk_size": self.chunk_size or DEFAULT_CHUNK_SIZE,
        }

    def _engine(self) -> DaskEngine:
        if self.engine is None:
            if self.client is not None:
                self.engine = DaskEngine(client=self.client, **self.engine_options)
            else:
                self.engine = engine_module.get_engine(self._scheduler, **self.engine_options)
        return self.engine

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        """One problem: solved in this process by the inner sampler."""
        return self._local.sample(bqm, **parameters)

    def sample_batch(self, batch: IsingBatch, **run_options: Any) -> BatchResult:
        """Solve ``batch`` in chunks on the engine (``seed`` seeds the whole batch)."""
        return solve_batch_distributed(
            self.inner,
            batch,
            engine=self._engine(),
            chunk_size=self.chunk_size,
            **run_options,
        )
