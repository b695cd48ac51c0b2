"""Methods, tasks and search grids of the fair protocol (:data:`PROTOCOL_VERSION`).

:class:`Method` (an optimiser, its fixed options and search axes) and :class:`Task` (a dataset,
a model factory and the epoch budget) are what :func:`bnn.experiments.run_experiment` combines;
:func:`build_methods` makes the standard column set and :func:`fair_grids` its axes;
:func:`fix_threads` pins torch's and numba's thread counts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

#: Identifies the protocol in the results (``protocol.version``); :func:`summary_index` only
#: gathers experiments run under it.
PROTOCOL_VERSION = "fair-1"

#: Column order of the tables: QP-SBGD backends first, their c = 0 ablations, then the baselines.
METHOD_ORDER: tuple[str, ...] = (
    "qpsbgd_mock-dwave",
    "qpsbgd_neal",
    "qpsbgd_batched",
    "qpsbgd_exact",
    "qpsbgd_mock-dwave_c0",
    "qpsbgd_neal_c0",
    "qpsbgd_batched_c0",
    "qpsbgd_exact_c0",
    "binaryconnect",
    "signsgd",
    "proxquant",
    "bop",
    "full_precision",
)

#: Display names of the methods.
METHOD_LABELS: dict[str, str] = {
    "binaryconnect": "BinaryConnect",
    "signsgd": "signSGD",
    "proxquant": "ProxQuant",
    "bop": "Bop",
    "full_precision": "full precision",
}

_BASELINE_OPTIMIZER = {
    "binaryconnect": "binaryconnect",
    "signsgd": "signsgd",
    "proxquant": "proxquant",
    "bop": "bop",
    "full_precision": "adam",
}

#: Hard limits of the hyperparameters an extension must respect (inclusive).
BOUNDS: dict[str, tuple[float, float]] = {
    "lr": (0.0, 1.0),
    "other_lr": (0.0, 1.0),
    "gamma": (0.0, 1.0),
    "threshold": (0.0, math.inf),
    "curvature": (0.0, math.inf),
}


def _label(key: str) -> str:
    if key.startswith("qpsbgd_"):
        rest = key.removeprefix("qpsbgd_")
        if rest.endswith("_c0"):
            return f"QP-SBGD c=0 ({rest.removesuffix('_c0')})"
        if rest.startswith("sm_"):
            return f"QP-SBGD sign-match ({rest.removeprefix('sm_')})"
        return f"QP-SBGD ({rest})"
    return METHOD_LABELS.get(key, key)


@dataclass
class Method:
    """One column of an experiment.

    Attributes:
        key: Identifier (``"qpsbgd_batched"``, ``"qpsbgd_batched_c0"``, ``"bop"``, ...).
        label: Column title.
        optimizer: Name for :func:`bnn.baselines.make_optimizer`.
        grid: Explicit hyperparameter settings (no edge extension); ignored when ``axes``
            is given.
        axes: Search axes (name -> increasing values); the grid is their product and an axis
            whose chosen value sits on an edge is extended (see :func:`search`).
        binary: Whether the model is binary (False: the full-precision reference).
        fixed: Options passed to the optimizer in every setting (e.g. the annealer).
        tie_other_lr: QP-SBGD: set ``other_lr`` (Adam on the non-binary parameters) to the
            setting's ``lr``, as the baselines' single ``lr`` does.
        seeds: Override of the experiment's seeds (a slow method run on fewer seeds).
        epochs: Override of the task's epochs.
        max_batches: Cap on mini-batches per epoch (None: all).
        search_from: Key of another method whose chosen setting this one reuses instead of
            searching (same algorithm on a slower backend); recorded in the results.
    """

    key: str
    label: str
    optimizer: str
    grid: list[dict[str, Any]] = field(default_factory=list)
    axes: dict[str, list[float]] | None = None
    binary: bool = True
    fixed: dict[str, Any] = field(default_factory=dict)
    tie_other_lr: bool = False
    seeds: list[int] | None = None
    epochs: int | None = None
    max_batches: int | None = None
    search_from: str | None = None

    def __post_init__(self) -> None:
        if self.axes is not None:
            for name, vals in self.axes.items():
                if not vals or list(vals) != sorted(vals) or len(set(vals)) != len(vals):
                    raise ValueError(
                        f"axis {name!r} of method {self.key!r} must be a non-empty list of "
                        f"distinct increasing values (got {vals!r})"
                    )
            self.axes = {k: list(v) for k, v in self.axes.items()}
            self.grid = make_grid(**self.axes)


@dataclass
class Task:
    """A dataset, a model factory and the training protocol shared by all methods.

    Attributes:
        name: Identifier used in file names.
        dataset: A ``bnn.data.TabularDataset`` or ``GraphDataset`` with a validation split.
        model_fn: ``model_fn(dataset, binary)`` builds a fresh model (seed the RNG first).
        epochs: Maximum epochs of every run.
        batch_size: Mini-batch size (tabular data; graphs train full-batch).
        search_epochs: Epochs of the search runs (None: ``search_fraction`` x ``epochs``).
        search_fraction: Fraction of ``epochs`` the search runs last (the same for every
            method; rounded up).
        patience: Early stopping: stop a run after this many epochs without a better
            validation score (None: run every epoch). Selection is at the best-validation
            epoch either way.
        max_extensions: How many times the search may extend its grid at an edge.
        max_batches: Cap on mini-batches per epoch (None: all).
        search_seeds: Search runs per setting (seeds ``search_seed + k``); a setting's score
            is the mean of their validation scores (one run is a noisy selector where the
            settings' differences are below one run's spread).
    """

    name: str
    dataset: Any
    model_fn: Callable[[Any, bool], nn.Module]
    epochs: int
    batch_size: int = 32
    search_epochs: int | None = None
    search_fraction: float = 1.0
    patience: int | None = None
    max_extensions: int = 3
    max_batches: int | None = None
    search_seeds: int = 1

    def __post_init__(self) -> None:
        if (
            isinstance(self.search_seeds, bool)
            or not isinstance(self.search_seeds, int)
            or self.search_seeds < 1
        ):
            raise ValueError(f"search_seeds must be a positive int (got {self.search_seeds!r})")
        if not 0 < self.search_fraction <= 1:
            raise ValueError(f"search_fraction must be in (0, 1] (got {self.search_fraction!r})")
        if self.patience is not None and (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, int)
            or self.patience < 1
        ):
            raise ValueError(f"patience must be a positive int or None (got {self.patience!r})")
        if (
            isinstance(self.max_extensions, bool)
            or not isinstance(self.max_extensions, int)
            or (self.max_extensions < 0)
        ):
            raise ValueError(f"max_extensions must be an int >= 0 (got {self.max_extensions!r})")

    def search_epoch_count(self) -> int:
        """Epochs of one search run."""
        if self.search_epochs is not None:
            return self.search_epochs
        return max(1, math.ceil(self.search_fraction * self.epochs))


def shrink_tabular(dataset: Any, *, train: int, val: int, test: int) -> Any:
    """The first ``train``/``val``/``test`` rows of each split of a tabular dataset (smoke runs).

    Raises:
        ValueError: a non-positive size.
    """
    import dataclasses

    for name, n in (("train", train), ("val", val), ("test", test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive int (got {n!r})")
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[:train],
        y_train=dataset.y_train[:train],
        x_val=dataset.x_val[:val],
        y_val=dataset.y_val[:val],
        x_test=dataset.x_test[:test],
        y_test=dataset.y_test[:test],
    )


def fair_grids(
    lr: Sequence[float],
    curvature: Sequence[float],
    *,
    qpsbgd_lr: Sequence[float] | None = None,
    c0_lr: Sequence[float] | None = None,
    baseline_lr: Sequence[float] | None = None,
    full_precision_lr: Sequence[float] | None = None,
    bop_axes: Mapping[str, Sequence[float]] | None = None,
    proxquant_reg_rate: Sequence[float] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """The search axes of every method under protocol ``fair-1`` (one definition for all scripts).

    Every binary method searches its step size ``lr`` on the same values, the non-binary
    parameters' Adam lr tied to it (QP-SBGD ``other_lr = lr``); QP-SBGD adds its
    ``curvature``; the c = 0 ablation is the same pipeline at curvature 0; ProxQuant adds the
    growth rate ``reg_rate`` of its regulariser (the schedule ``lambda_t = reg_rate * t`` counts
    steps, so the right rate depends on the steps a task takes: 1 per epoch on a full-batch
    graph, ~100 on a1a); Bop, which has no step size, searches ``threshold`` x ``gamma`` x its
    Adam ``lr``. The keyword overrides
    exist for the reduced smoke grids; a full grid passes ``lr`` and ``curvature`` only. The
    harness extends any axis whose choice sits on an edge.

    Example:
        >>> sorted(fair_grids([0.01, 0.1], [1.0, 10.0]))[:3]
        ['binaryconnect', 'bop', 'full_precision']
    """
    base = list(baseline_lr if baseline_lr is not None else lr)
    bop = bop_axes or {"threshold": [1e-6, 1e-4, 1e-2], "gamma": [1e-3, 1e-2, 1e-1]}
    return {
        "qpsbgd": {"lr": list(qpsbgd_lr or lr), "curvature": list(curvature)},
        "qpsbgd_c0": {"lr": list(c0_lr or lr)},
        **{k: {"lr": base} for k in ("binaryconnect", "signsgd")},
        "proxquant": {"lr": base, "reg_rate": list(proxquant_reg_rate or [1e-3, 1e-2, 1e-1])},
        "bop": {**{k: list(v) for k, v in bop.items()}, "lr": base},
        "full_precision": {"lr": list(full_precision_lr or lr)},
    }


def make_grid(**values: Sequence[Any]) -> list[dict[str, Any]]:
    """All combinations of the given hyperparameter values (a product grid).

    Example:
        >>> make_grid(lr=[0.1, 0.01], curvature=[1.0])
        [{'lr': 0.1, 'curvature': 1.0}, {'lr': 0.01, 'curvature': 1.0}]
    """
    for name, vals in values.items():
        if isinstance(vals, str) or not isinstance(vals, Sequence) or len(vals) == 0:
            raise ValueError(f"grid values of {name!r} must be a non-empty sequence (got {vals!r})")
    keys = list(values)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values.values())]


def build_methods(
    grids: Mapping[str, Any],
    *,
    backends: Sequence[str],
    annealer: Mapping[str, Any] | None = None,
    qpsbgd_options: Mapping[str, Any] | None = None,
    include: Sequence[str] | None = None,
    ablation_backends: Sequence[str] | None = None,
    tie_other_lr: bool = True,
) -> list[Method]:
    """The methods of an experiment, in :data:`METHOD_ORDER`.

    Args:
        grids: Search space per method family: ``"qpsbgd"`` (shared by every backend),
            ``"qpsbgd_c0"`` (optional: the curvature-0 ablation, its ``curvature`` is forced
            to 0), ``"binaryconnect"``, ``"signsgd"``, ``"proxquant"``, ``"bop"`` (optional)
            and ``"full_precision"``. A dict is a set of axes (extended at edges), a list an
            explicit grid.
        backends: Annealer backends of the QP-SBGD columns (``"neal"``, ``"batched"``, ...).
        annealer: Settings shared by the backends (``num_reads``, ``num_sweeps``, ...); the
            generic knobs a backend lacks are dropped (see :class:`qsgd.config.AnnealerConfig`).
        qpsbgd_options: Fixed QPSBGD options (``formulation``, ``curvature_scale``, ...).
        include: Method keys to keep (None: all).
        ablation_backends: Backends that also get a ``qpsbgd_<backend>_c0`` column (default:
            ``batched`` if it is a backend, else the first backend) when ``grids`` has
            ``"qpsbgd_c0"``.
        tie_other_lr: QP-SBGD's ``other_lr`` follows its ``lr`` (as the baselines' single lr).

    Raises:
        ValueError: a required family is missing or an unknown key in ``include``.
    """
    from qsgd.config import AnnealerConfig

    required = ["qpsbgd", "binaryconnect", "signsgd", "proxquant", "full_precision"]
    missing = [f for f in required if f not in grids]
    if missing:
        raise ValueError(f"grids is missing the method family {missing[0]!r}")

    def spec(family: str) -> dict[str, Any]:
        g = grids[family]
        return {"axes": dict(g)} if isinstance(g, Mapping) else {"grid": list(g)}

    methods: list[Method] = []
    if ablation_backends is None:
        ablation_backends = ["batched"] if "batched" in backends else list(backends[:1])
    for name in backends:
        cfg = AnnealerConfig.from_dict({**dict(annealer or {}), "backend": name})
        fixed = {"backend": cfg, **dict(qpsbgd_options or {})}
        key = f"qpsbgd_{name}"
        methods.append(
            Method(
                key, _label(key), "qpsbgd", fixed=fixed, tie_other_lr=tie_other_lr, **spec("qpsbgd")
            )
        )
        if "qpsbgd_c0" in grids and name in ablation_backends:
            key0 = f"{key}_c0"
            methods.append(
                Method(
                    key0,
                    _label(key0),
                    "qpsbgd",
                    fixed={**fixed, "curvature": 0.0},
                    tie_other_lr=tie_other_lr,
                    **spec("qpsbgd_c0"),
                )
            )
    for key, opt in _BASELINE_OPTIMIZER.items():
        if key in grids:
            methods.append(
                Method(key, _label(key), opt, binary=key != "full_precision", **spec(key))
            )
    known = [m.key for m in methods]
    if include is not None:
        unknown = [k for k in include if k not in known]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; methods of this run: {known}")
        methods = [m for m in methods if m.key in include]
    order = {k: i for i, k in enumerate(METHOD_ORDER)}
    return sorted(methods, key=lambda m: order.get(m.key, len(order)))


def fix_threads(threads: int, *, numba_too: bool = True) -> dict[str, int]:
    """Fix torch's and numba's CPU thread counts (reproducibility: torch splits its float
    reductions by thread); returns the counts to record.

    Args:
        threads: Threads of each library.
        numba_too: Also set numba's (this starts numba's OpenMP thread pool, after which the
            process must not fork: pass False in a parent that will fork workers).

    Raises:
        ValueError: ``threads`` is not a positive int.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int (got {threads!r})")
    torch.set_num_threads(threads)
    out = {"torch": torch.get_num_threads()}
    if not numba_too:
        return out
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        out["numba"] = numba.get_num_threads()
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    torch.set_num_threads(threads)  # numba's OpenMP layer may have reset it
    return out
