"""The shared harness of the paper's experiments (``examples/*.py``), under one fair protocol.

One experiment compares methods (QP-SBGD on one or more annealer backends, its curvature-0
ablation, BinaryConnect, signSGD, ProxQuant, Bop and a full-precision reference) on one task.
The protocol is the same for every method (:data:`PROTOCOL_VERSION`):

1. **Search** (:func:`search`): every method searches its binary step size and its non-binary
   learning rate alike. The non-binary parameters (batch norm, output scale) are trained by
   Adam; their learning rate is *tied to the step size* for every method (``other_lr = lr``
   for QP-SBGD, which is what the baselines' shared ``lr`` does), or searched as its own axis
   (``other_lr`` in a grid). QP-SBGD searches its curvature on top; Bop, which has no step
   size, searches ``threshold`` x ``gamma`` x its Adam ``lr`` (on the same values as the others'
   step sizes). Grids are given as axes; whenever the chosen value of an axis sits on the
   edge of its grid, the axis is extended in that direction (geometrically) and the new
   points are trained, up to ``max_extensions`` times; every extension, and an edge that
   remains, is recorded. Each setting is trained once with the search seed; it runs for
   ``search_fraction`` x the final epochs (the same fraction for every method).
2. **Model selection at the best-validation epoch**: every run (search and final) is evaluated
   after every epoch; its score is the best validation accuracy over its epochs (ties: lower
   validation loss), and the test accuracy reported is the one *at that epoch*. With a
   ``patience`` a run stops after that many epochs without a better validation score.
3. **Runs** (:func:`run_seeds`): the chosen setting is trained with every seed (model
   initialisation, data order and annealer seed) and scored on the test split.
4. **Report**: a JSON of raw per-seed results (:func:`write_results`), a markdown table of
   mean ± std with one column per method (:func:`markdown_table`), per-seed paired differences
   of every QP-SBGD column against every other method with a 95 % t-interval
   (:func:`paired_differences`) and curves (:func:`plot_curves`). Every accuracy is reported
   next to the majority-class rate. :func:`summary_index` gathers the experiment JSONs into
   ``results/summary.json``.

Torch and numba run with a fixed, recorded thread count (:func:`fix_threads`); with it a rerun
of a results command on the same machine reproduces the JSON's numbers exactly (timings aside).
Methods can run in parallel worker processes (``jobs``); that does not change any number.

Training uses :func:`bnn.training.fit` (mini-batches for tabular data, full batch for graphs).

Example:
    >>> from bnn.data import get_dataset
    >>> from bnn.models import BinaryMLP
    >>> task = Task("digits", get_dataset("digits"),
    ...             lambda ds, binary: BinaryMLP(ds.num_features, [16], ds.num_classes, binary=binary),
    ...             epochs=1, batch_size=64)
    >>> m = Method("signsgd", "signSGD", "signsgd", axes={"lr": [0.003, 0.01, 0.03]})
    >>> res = run_method(task, m, seeds=[0], search_seed=100)
    >>> sorted(res)[:3], len(res["runs"])
    (['axes', 'binary', 'budget'], 1)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "fair_grids",
    "METHOD_ORDER",
    "METHOD_LABELS",
    "PROTOCOL_VERSION",
    "Method",
    "Task",
    "make_grid",
    "build_methods",
    "fix_threads",
    "train_once",
    "search",
    "run_seeds",
    "run_method",
    "summarize",
    "mean_std",
    "paired_differences",
    "markdown_table",
    "plot_curves",
    "write_results",
    "numbers_only",
    "summary_index",
    "summary_markdown",
    "add_common_arguments",
    "annealer_settings",
    "command_line",
    "environment",
    "run_experiment",
    "shrink_tabular",
]

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

    def __post_init__(self) -> None:
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
) -> dict[str, dict[str, list[float]]]:
    """The search axes of every method under protocol ``fair-1`` (one definition for all scripts).

    Every binary method searches its step size ``lr`` on the same values, the non-binary
    parameters' Adam lr tied to it (QP-SBGD ``other_lr = lr``); QP-SBGD adds its
    ``curvature``; the c = 0 ablation is the same pipeline at curvature 0; Bop, which has no
    step size, searches ``threshold`` x ``gamma`` x its Adam ``lr``. The keyword overrides
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
        **{k: {"lr": base} for k in ("binaryconnect", "signsgd", "proxquant")},
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


def _make_optimizer(method: Method, model: nn.Module, hparams: Mapping[str, Any], seed: int):
    """The optimizer of one run: ``method.fixed`` + ``hparams``; a searched ``other_lr`` of a
    baseline becomes the lr of a second param group holding the non-binary parameters."""
    from bnn.baselines import make_optimizer
    from qsgd.binary import is_binary_param

    options = {**method.fixed, **hparams}
    if method.optimizer == "qpsbgd":
        options["seed"] = seed
        if method.tie_other_lr and "other_lr" not in hparams and "lr" in options:
            options["other_lr"] = options["lr"]
        return make_optimizer("qpsbgd", model, **options)
    other_lr = options.pop("other_lr", None)
    if other_lr is None or method.optimizer == "adam":
        return make_optimizer(method.optimizer, model, **options)
    params = list(model.parameters())
    groups = [{"params": [p for p in params if is_binary_param(p)]}]
    rest = [p for p in params if not is_binary_param(p)]
    if rest:
        groups.append({"params": rest, "lr": float(other_lr)})
    return make_optimizer(method.optimizer, groups, **options)


class _EarlyStop(Exception):
    """Raised by the epoch callback when the patience is exhausted."""


_CURVE_KEYS = ("epoch", "train_loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss")


def _score(record: Mapping[str, Any]) -> tuple[float, float]:
    acc = record.get("val_accuracy")
    loss = record.get("val_loss")
    acc = -math.inf if acc is None or not math.isfinite(acc) else acc
    loss = math.inf if loss is None or not math.isfinite(loss) else loss
    return acc, -loss


def train_once(
    task: Task,
    method: Method,
    hparams: Mapping[str, Any],
    seed: int,
    *,
    epochs: int | None = None,
    patience: int | None | str = "task",
) -> dict[str, Any]:
    """Train one model with one setting and seed, evaluating every epoch; returns its record.

    The reported validation and test numbers are those of the **best-validation epoch**
    (highest validation accuracy, ties: lower validation loss; the earliest such epoch).
    With a patience the run stops after that many epochs without a better score.
    With an active :mod:`bnn.trial_store` (``--resume-dir``) a run already in the store is
    returned from it, and a new run is written to it.

    Args:
        task: The task.
        method: The method (its ``fixed`` options plus ``hparams`` build the optimizer).
        hparams: The hyperparameters of this run.
        seed: Seeds the model initialisation, the data order and the annealer.
        epochs: Maximum epochs (default: the method's, else the task's).
        patience: Early-stopping patience (default: the task's; None: none).

    Returns:
        ``seed``, ``hparams``, ``epochs`` (maximum), ``epochs_run``, ``best_epoch``,
        ``val_accuracy``, ``val_loss``, ``test_accuracy``, ``test_loss`` (at the best epoch),
        ``last`` (the same four at the last epoch run), ``train_loss`` (last epoch),
        ``wall_time``, ``wall_time_per_epoch``, ``solver_time`` and ``curve`` (per epoch:
        ``epoch``, ``train_loss``, ``val_accuracy``, ``val_loss``, ``test_accuracy``,
        ``test_loss``).
    """
    from bnn.training import fit, seed_everything
    from bnn.trial_store import active_store

    epochs = epochs or method.epochs or task.epochs
    patience = task.patience if patience == "task" else patience
    seed_everything(seed)
    model = task.model_fn(task.dataset, method.binary)
    store = active_store()
    if store is not None:
        inputs = _run_inputs(task, method, hparams, seed, epochs, patience)
        inputs["model"] = repr(model)
        key = store.key(inputs)
        cached = store.get(key)
        if cached is not None:
            return cached
    optimizer = _make_optimizer(method, model, hparams, seed)
    curve: list[dict[str, Any]] = []
    state: dict[str, Any] = {"best": None, "since": 0, "solver": 0.0}

    def collect(kind: str, record: Mapping[str, Any]) -> None:
        if kind == "step":
            state["solver"] += record.get("solver_time") or 0.0
            return
        point = {k: record.get(k) for k in _CURVE_KEYS}
        curve.append(point)
        if state["best"] is None or _score(point) > _score(state["best"]):
            state["best"], state["since"] = point, 0
        else:
            state["since"] += 1
        if patience is not None and state["since"] >= patience and point["epoch"] < epochs:
            raise _EarlyStop

    max_batches = method.max_batches if method.max_batches is not None else task.max_batches
    t0 = time.perf_counter()
    try:
        fit(
            model,
            optimizer,
            task.dataset,
            epochs=epochs,
            batch_size=task.batch_size,
            seed=seed,
            eval_interval=1,
            max_batches_per_epoch=max_batches,
            progress=False,
            plots=False,
            callbacks=[collect],
            handle_signals=False,
        )
    except _EarlyStop:
        pass
    wall = time.perf_counter() - t0
    best, last = state["best"], curve[-1]
    record = {
        "seed": seed,
        "hparams": dict(hparams),
        "epochs": epochs,
        "epochs_run": len(curve),
        "best_epoch": best["epoch"],
        "max_batches_per_epoch": max_batches,
        "train_loss": last["train_loss"],
        "val_accuracy": best["val_accuracy"],
        "val_loss": best["val_loss"],
        "test_accuracy": best["test_accuracy"],
        "test_loss": best["test_loss"],
        "last": {k: last[k] for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss")},
        "wall_time": wall,
        "wall_time_per_epoch": wall / max(len(curve), 1),
        "solver_time": state["solver"],
        "curve": curve,
    }
    if store is not None:
        store.put(key, _jsonable(record), inputs)
    return record


def _run_inputs(
    task: Task,
    method: Method,
    hparams: Mapping[str, Any],
    seed: int,
    epochs: int,
    patience: int | None,
) -> dict[str, Any]:
    """Everything the numbers of one :func:`train_once` depend on (the trial-store key)."""
    ds = task.dataset
    return _jsonable(
        {
            "protocol": PROTOCOL_VERSION,
            "task": task.name,
            "dataset": {"type": type(ds).__name__, "sha256": _dataset_digest(ds)},
            "batch_size": task.batch_size,
            "max_batches": method.max_batches
            if method.max_batches is not None
            else task.max_batches,
            "method": {
                "key": method.key,
                "optimizer": method.optimizer,
                "binary": method.binary,
                "fixed": method.fixed,
                "tie_other_lr": method.tie_other_lr,
            },
            "hparams": dict(hparams),
            "seed": seed,
            "epochs": epochs,
            "patience": patience,
            "torch_threads": torch.get_num_threads(),
        }
    )


_DIGESTS: dict[int, tuple[Any, str]] = {}


def _dataset_digest(ds: Any) -> str:
    """SHA-256 over a dataset's tensors and arrays (field name, dtype, shape, bytes); memoised."""
    import hashlib

    hit = _DIGESTS.get(id(ds))
    if hit is not None and hit[0] is ds:
        return hit[1]
    digest = hashlib.sha256()
    for name, value in sorted(vars(ds).items()):
        if torch.is_tensor(value):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            digest.update(f"{name}:{arr.dtype}:{arr.shape}".encode())
            digest.update(arr.tobytes())
        elif isinstance(value, str | int | float | bool) or value is None:
            digest.update(f"{name}={value!r}".encode())
    _DIGESTS[id(ds)] = (ds, digest.hexdigest())
    return _DIGESTS[id(ds)][1]


def _extend(values: list[float], direction: int, bounds: tuple[float, float]) -> float | None:
    """The next value beyond an edge of a sorted axis (geometric step from the two outermost
    values, arithmetic where a value is <= 0), clipped to ``bounds``; None if none is left."""
    lo, hi = bounds
    new = _extend_raw(values, direction, lo, hi)
    return None if new is None else float(f"{new:.6g}")


def _extend_raw(values: list[float], direction: int, lo: float, hi: float) -> float | None:
    if direction > 0:
        a, b = values[-2], values[-1]
        new = b * (b / a) if a > 0 else b + (b - a)
        new = min(new, hi)
        return new if new > b else None
    a, b = values[0], values[1]
    new = a * (a / b) if a > 0 else a - (b - a)
    if new <= lo and lo == 0.0 and a > 0:
        return None
    new = max(new, lo)
    return new if new < a else None


def _edges(axes: Mapping[str, list[float]], chosen: Mapping[str, Any]) -> list[tuple[str, int]]:
    out = []
    for name, vals in axes.items():
        if len(vals) < 2 or name not in chosen:
            continue
        if chosen[name] == vals[0]:
            out.append((name, -1))
        elif chosen[name] == vals[-1]:
            out.append((name, +1))
    return out


def _hp_key(hp: Mapping[str, Any]) -> tuple:
    return tuple(sorted(hp.items()))


def search(
    task: Task, method: Method, *, seed: int, epochs: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Try every setting once (search seed, ``task.search_epoch_count()`` epochs, early
    stopping as the final runs); pick the best validation score at the best epoch.

    With ``method.axes`` an axis whose chosen value is the first or last of its values is
    extended by one value in that direction (the ratio of its two outermost values; within
    :data:`BOUNDS`), the new points of the product grid are trained and the choice is made
    again, up to ``task.max_extensions`` rounds.

    Returns:
        ``(chosen_hparams, trials, info)``: each trial is ``hparams``, ``val_accuracy``,
        ``val_loss``, ``best_epoch``, ``epochs_run``, ``wall_time``; ``info`` has ``epochs``,
        ``extensions`` (``axis``, ``direction``, ``value`` per added value), ``axes`` (final),
        ``at_edge`` (axes whose chosen value is still on an extendable edge: the bound on
        extensions was hit) and ``at_bound`` (edge values that are hard limits).

    Raises:
        ValueError: empty grid.
    """
    if not method.grid:
        raise ValueError(f"method {method.key!r} has an empty search grid")
    epochs = epochs or (
        task.search_epoch_count()
        if method.epochs is None
        else max(1, math.ceil(task.search_fraction * method.epochs))
    )
    trials: list[dict[str, Any]] = []
    tried: set[tuple] = set()

    def run(points: Sequence[Mapping[str, Any]]) -> None:
        for hp in points:
            if _hp_key(hp) in tried:
                continue
            tried.add(_hp_key(hp))
            rec = train_once(task, method, hp, seed, epochs=epochs)
            trials.append(
                {
                    "hparams": dict(hp),
                    "val_accuracy": rec["val_accuracy"],
                    "val_loss": rec["val_loss"],
                    "best_epoch": rec["best_epoch"],
                    "epochs_run": rec["epochs_run"],
                    "wall_time": rec["wall_time"],
                }
            )

    run(method.grid)
    axes = {k: list(v) for k, v in (method.axes or {}).items()}
    extensions: list[dict[str, Any]] = []
    at_edge: list[str] = []
    at_bound: list[str] = []
    rounds = 0
    while True:
        best = max(trials, key=_score)
        edges = _edges(axes, best["hparams"])
        grow = []
        at_bound = []
        for name, direction in edges:
            new = _extend(axes[name], direction, BOUNDS.get(name, (-math.inf, math.inf)))
            if new is None:
                at_bound.append(name)
            else:
                grow.append((name, direction, new))
        if not grow:
            at_edge = []
            break
        if rounds >= task.max_extensions:
            at_edge = [name for name, _, _ in grow]
            break
        rounds += 1
        for name, direction, new in grow:
            axes[name] = [new, *axes[name]] if direction < 0 else [*axes[name], new]
            extensions.append({"round": rounds, "axis": name, "direction": direction, "value": new})
        run(make_grid(**axes))
    info = {
        "epochs": epochs,
        "axes": axes or None,
        "extensions": extensions,
        "at_edge": at_edge,
        "at_bound": at_bound,
    }
    return dict(best["hparams"]), trials, info


def run_seeds(
    task: Task, method: Method, hparams: Mapping[str, Any], seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """:func:`train_once` for each seed."""
    return [train_once(task, method, hparams, s) for s in seeds]


def run_method(
    task: Task,
    method: Method,
    *,
    seeds: Sequence[int],
    search_seed: int,
    chosen: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Search (unless ``chosen`` is given, e.g. reused from another method), then run the seeds.

    Returns:
        The method's results: ``key``, ``label``, ``optimizer``, ``binary``, ``fixed``
        (JSON-friendly), ``tie_other_lr``, ``grid`` (initial), ``axes`` (initial),
        ``budget`` (search trials run), ``search`` (trials), ``search_info`` (see
        :func:`search`), ``search_from``, ``chosen``, ``seeds``, ``epochs``, ``runs``
        (per-seed records) and ``summary`` (:func:`summarize`).
    """
    trials: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    if chosen is None:
        chosen, trials, info = search(task, method, seed=search_seed)
    t_search = time.perf_counter() - t0
    seeds = list(method.seeds if method.seeds is not None else seeds)
    runs = run_seeds(task, method, chosen, seeds)
    return {
        "key": method.key,
        "label": method.label,
        "optimizer": method.optimizer,
        "binary": method.binary,
        "fixed": _jsonable(method.fixed),
        "tie_other_lr": method.tie_other_lr,
        "grid": method.grid,
        "axes": method.axes,
        "budget": len(trials),
        "search": trials,
        "search_info": info,
        "search_from": method.search_from,
        "chosen": dict(chosen),
        "seeds": seeds,
        "epochs": method.epochs or task.epochs,
        "max_batches_per_epoch": method.max_batches
        if method.max_batches is not None
        else task.max_batches,
        "runs": runs,
        "summary": summarize(runs),
        "wall_time": {"search": t_search, "total": time.perf_counter() - t0},
    }


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value) of the finite values.

    Example:
        >>> mean_std([1.0, 3.0])
        (2.0, 1.4142135623730951)
    """
    arr = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return None, None
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of the test accuracy and loss (at the best-validation epoch),
    the last-epoch test accuracy, the best epoch, the epochs run and the wall time per epoch."""
    out: dict[str, Any] = {"n": len(runs)}
    for key in (
        "test_accuracy",
        "test_loss",
        "wall_time_per_epoch",
        "val_accuracy",
        "best_epoch",
        "epochs_run",
    ):
        m, s = mean_std([r.get(key) for r in runs])
        out[key] = {"mean": m, "std": s}
    m, s = mean_std([(r.get("last") or {}).get("test_accuracy") for r in runs])
    out["last_test_accuracy"] = {"mean": m, "std": s}
    return out


def paired_differences(
    methods: Mapping[str, Mapping[str, Any]], *, confidence: float = 0.95
) -> list[dict[str, Any]]:
    """Per-seed paired differences of test accuracy, every QP-SBGD column minus every
    non-QP-SBGD method and minus its own curvature-0 ablation (``<key>_c0``), over the seeds
    both ran; mean, std and a two-sided t-interval.

    Returns:
        One record per pair: ``method``, ``baseline``, ``seeds``, ``diffs``, ``mean``,
        ``std``, ``ci`` (``[low, high]``; None with fewer than 2 seeds), ``confidence``.
    """
    from scipy import stats

    out = []
    for qk, q in methods.items():
        if not qk.startswith("qpsbgd") or qk.endswith("_c0"):
            continue
        qacc = {r["seed"]: r["test_accuracy"] for r in q["runs"]}
        for bk, b in methods.items():
            if bk.startswith("qpsbgd") and bk != f"{qk}_c0":
                continue
            bacc = {r["seed"]: r["test_accuracy"] for r in b["runs"]}
            seeds = sorted(set(qacc) & set(bacc))
            diffs = [qacc[s] - bacc[s] for s in seeds]
            if not diffs:
                continue
            mean, std = mean_std(diffs)
            ci = None
            if len(diffs) > 1:
                half = (
                    float(stats.t.ppf(0.5 + confidence / 2, len(diffs) - 1))
                    * std
                    / math.sqrt(len(diffs))
                )
                ci = [mean - half, mean + half]
            out.append(
                {
                    "method": qk,
                    "baseline": bk,
                    "seeds": seeds,
                    "diffs": diffs,
                    "mean": mean,
                    "std": std,
                    "ci": ci,
                    "confidence": confidence,
                }
            )
    return out


def _fmt(stat: Mapping[str, Any] | None, digits: int) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _fmt_hp(hp: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


def _search_cell(m: Mapping[str, Any]) -> str:
    if m.get("search_from"):
        return f"reused from {_label(m['search_from'])}"
    info = m.get("search_info") or {}
    cell = f"{m['budget']} ({info.get('epochs', '?')} ep)"
    if info.get("extensions"):
        cell += ", extended " + ", ".join(
            f"{e['axis']}{'+' if e['direction'] > 0 else '-'}" for e in info["extensions"]
        )
    if info.get("at_edge"):
        cell += ", **still at edge: " + ", ".join(info["at_edge"]) + "**"
    if info.get("at_bound"):
        cell += ", at bound: " + ", ".join(info["at_bound"])
    return cell


def markdown_table(results: Mapping[str, Any]) -> str:
    """The results as markdown: one column per method (mean ± std over seeds), then the paired
    differences of each QP-SBGD column against every other method.

    Rows: test accuracy at the best-validation epoch, test loss, last-epoch test accuracy,
    validation accuracy, best epoch, epochs run, wall time per epoch (s), the majority-class
    rate, seeds, maximum epochs, the search (trials, epochs, extensions) and the choice.
    """
    methods = list(results["methods"].values())
    head = "| | " + " | ".join(m["label"] for m in methods) + " |"
    sep = "|---|" + "---|" * len(methods)
    rows = [
        (
            "test accuracy (best-val epoch)",
            [_fmt(m["summary"]["test_accuracy"], 4) for m in methods],
        ),
        ("test loss", [_fmt(m["summary"]["test_loss"], 4) for m in methods]),
        (
            "test accuracy (last epoch)",
            [_fmt(m["summary"].get("last_test_accuracy"), 4) for m in methods],
        ),
        ("validation accuracy", [_fmt(m["summary"]["val_accuracy"], 4) for m in methods]),
        ("best epoch", [_fmt(m["summary"].get("best_epoch"), 1) for m in methods]),
        ("epochs run", [_fmt(m["summary"].get("epochs_run"), 1) for m in methods]),
        ("wall time / epoch (s)", [_fmt(m["summary"]["wall_time_per_epoch"], 2) for m in methods]),
        (
            "majority rate (test)",
            [f"{results.get('majority_rate', float('nan')):.4f}" for _ in methods],
        ),
        ("seeds", [str(len(m["seeds"])) for m in methods]),
        (
            "max epochs (batches/epoch cap)",
            [
                f"{m['epochs']}"
                + (f" ({m['max_batches_per_epoch']})" if m.get("max_batches_per_epoch") else "")
                for m in methods
            ],
        ),
        ("search trials", [_search_cell(m) for m in methods]),
        ("chosen", [_fmt_hp(m["chosen"]) for m in methods]),
    ]
    title = results.get("title", results.get("task", ""))
    lines = [f"### {title}", "", head, sep]
    lines += ["| " + name + " | " + " | ".join(cells) + " |" for name, cells in rows]
    pairs = results.get("paired") or []
    if pairs:
        labels = {m["key"]: m["label"] for m in methods}
        lines += [
            "",
            "Paired per-seed differences of test accuracy (QP-SBGD minus the other method), "
            "mean ± std and 95 % t-interval:",
            "",
            "| QP-SBGD column | minus | seeds | mean ± std | 95 % interval |",
            "|---|---|---|---|---|",
        ]
        for p in pairs:
            ci = "n/a" if p["ci"] is None else f"[{p['ci'][0]:+.4f}, {p['ci'][1]:+.4f}]"
            lines.append(
                f"| {labels.get(p['method'], p['method'])} | {labels.get(p['baseline'], p['baseline'])} "
                f"| {len(p['seeds'])} | {p['mean']:+.4f} ± {p['std']:.4f} | {ci} |"
            )
    return "\n".join(lines) + "\n"


def plot_curves(results: Mapping[str, Any], path: str | Path) -> Path:
    """Test accuracy and training loss per epoch (mean over seeds, ± std band) per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m in results["methods"].values():
        for ax, key in zip(axes, ("test_accuracy", "train_loss"), strict=True):
            curves = [
                [(c["epoch"], c[key]) for c in r["curve"] if c.get(key) is not None]
                for r in m["runs"]
            ]
            curves = [c for c in curves if c]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            x = np.array([e for e, _ in curves[0][:n]])
            y = np.array([[v for _, v in c[:n]] for c in curves], dtype=float)
            mu, sd = y.mean(axis=0), y.std(axis=0)
            ax.plot(x, mu, marker="o", ms=3, label=m["label"])
            ax.fill_between(x, mu - sd, mu + sd, alpha=0.2)
    if results.get("majority_rate") is not None:
        axes[0].axhline(results["majority_rate"], color="k", ls="--", lw=1, label="majority rate")
    axes[0].set(xlabel="epoch", ylabel="test accuracy", title=results.get("title", ""))
    axes[1].set(xlabel="epoch", ylabel="training loss")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return repr(value)


_TIMING_KEYS = frozenset(
    {"wall_time", "wall_time_per_epoch", "solver_time", "environment", "date", "table"}
)


def numbers_only(results: Any) -> Any:
    """The results without timings, dates and the rendered table (which shows timings): what
    a rerun on the same machine must reproduce exactly."""
    if isinstance(results, Mapping):
        return {k: numbers_only(v) for k, v in results.items() if k not in _TIMING_KEYS}
    if isinstance(results, list | tuple):
        return [numbers_only(v) for v in results]
    return results


# --------------------------------------------------------------------- parallel methods
_POOL_STATE: dict[str, Any] = {}


def _pool_init(threads: int | None) -> None:
    if threads is not None:
        fix_threads(threads)


def _pool_run(index: int, chosen: Mapping[str, Any] | None) -> tuple[dict[str, Any], int | None]:
    task, methods, seeds, search_seed = (
        _POOL_STATE[k] for k in ("task", "methods", "seeds", "search_seed")
    )
    res = run_method(task, methods[index], seeds=seeds, search_seed=search_seed, chosen=chosen)
    try:
        import numba

        return res, numba.get_num_threads()
    except ImportError:  # pragma: no cover
        return res, None


def run_experiment(
    task: Task,
    methods: Sequence[Method],
    *,
    seeds: Sequence[int],
    search_seed: int = 1000,
    title: str = "",
    extra: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run every method (search, then seeds) and collect the results document.

    A method with ``search_from`` reuses the chosen setting of that method (run first).
    With ``jobs > 1`` the methods run in that many forked worker processes (each with
    ``threads`` torch/numba threads); every run is seeded on its own, so the numbers do not
    depend on ``jobs``. The parent must not have started numba's OpenMP pool before (see
    :func:`fix_threads`'s ``numba_too``).

    Returns:
        ``task``, ``title``, ``majority_rate`` (test) and ``majority_rate_val``, ``protocol``
        (version, maximum epochs, batch size, seeds, search seed, epochs and fraction,
        patience, extensions, selection rule, non-binary lr rule, threads), ``methods`` (by
        key, see :func:`run_method`), ``paired`` (:func:`paired_differences`),
        ``environment``, ``wall_time``, ``extra`` and ``table``.

    Raises:
        ValueError: a ``search_from`` that is not run, or ``jobs < 1``.
    """
    from bnn.training import _Data

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int (got {jobs!r})")
    if threads is not None:
        fix_threads(threads, numba_too=jobs == 1)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    keys = [m.key for m in methods]
    for m in methods:
        if m.search_from is not None and m.search_from not in keys:
            raise ValueError(
                f"method {m.key!r} reuses the search of {m.search_from!r}, which is not run"
            )
    methods = list(methods)
    first = [i for i, m in enumerate(methods) if m.search_from is None]
    later = [i for i, m in enumerate(methods) if m.search_from is not None]
    done: dict[str, dict[str, Any]] = {}
    worker_numba: int | None = None
    t0 = time.perf_counter()

    def report(res: Mapping[str, Any]) -> None:
        s = res["summary"]
        log(
            f"[{task.name}] {res['label']}: chosen {res['chosen']}, test accuracy "
            f"{_fmt(s['test_accuracy'], 4)} (best-val epoch), {_fmt(s['wall_time_per_epoch'], 2)}"
            f" s/epoch, {res['wall_time']['total']:.0f} s"
        )

    if jobs == 1 or len(first) < 2:
        for i in first + later:
            m = methods[i]
            chosen = done[m.search_from]["chosen"] if m.search_from else None
            log(f"[{task.name}] {m.label}: " + ("runs" if chosen else f"search ({len(m.grid)}+)"))
            done[m.key] = run_method(task, m, seeds=seeds, search_seed=search_seed, chosen=chosen)
            report(done[m.key])
    else:
        from concurrent.futures import ProcessPoolExecutor

        _POOL_STATE.update(task=task, methods=methods, seeds=list(seeds), search_seed=search_seed)
        try:
            with ProcessPoolExecutor(
                max_workers=jobs,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_pool_init,
                initargs=(threads,),
            ) as pool:
                futures = {pool.submit(_pool_run, i, None): i for i in first}
                log(f"[{task.name}] {len(first)} methods on {jobs} workers")
                for fut, i in futures.items():
                    done[methods[i].key], worker_numba = fut.result()
                    report(done[methods[i].key])
                futures = {
                    pool.submit(_pool_run, i, done[methods[i].search_from]["chosen"]): i
                    for i in later
                }
                for fut, i in futures.items():
                    done[methods[i].key], worker_numba = fut.result()
                    report(done[methods[i].key])
        finally:
            _POOL_STATE.clear()
    data = _Data(task.dataset)
    ordered = {k: done[k] for k in keys}
    results: dict[str, Any] = {
        "task": task.name,
        "title": title or task.name,
        "majority_rate": data.majority_rate("test"),
        "majority_rate_val": data.majority_rate("val"),
        "protocol": {
            "version": PROTOCOL_VERSION,
            "epochs": task.epochs,
            "batch_size": task.batch_size,
            "max_batches_per_epoch": task.max_batches,
            "seeds": list(seeds),
            "search_seed": search_seed,
            "search_epochs": task.search_epoch_count(),
            "search_fraction": task.search_fraction if task.search_epochs is None else None,
            "patience": task.patience,
            "max_extensions": task.max_extensions,
            "search_split": "validation",
            "selection": (
                "best validation accuracy at the best-validation epoch (ties: lower validation "
                "loss), test accuracy reported at that epoch"
                + (f"; early stopping, patience {task.patience}" if task.patience else "")
            ),
            "nonbinary_lr": (
                "Adam; its lr is tied to the step size lr for every method (QP-SBGD other_lr = "
                "lr; the baselines' single lr), Bop searches it as its lr axis"
            ),
            "threads": threads,
            "jobs": jobs,
        },
        "methods": ordered,
        "paired": paired_differences(ordered),
        # the parent of forked workers must not start numba's OpenMP pool (a later experiment
        # of the same script forks again): the workers report their numba thread count
        "environment": environment(threads, numba_threads=worker_numba if jobs > 1 else "query"),
        "wall_time": time.perf_counter() - t0,
        "extra": dict(extra or {}),
    }
    results["table"] = markdown_table(results)
    return results


# --------------------------------------------------------------------- summary.json
def summary_index(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Gather experiment JSONs (:func:`write_results`) run under :data:`PROTOCOL_VERSION`
    into ``{"experiments": {name: {"methods": {key: {...}}}}}``.

    Each method entry has ``test_acc_mean``, ``test_acc_std`` (over seeds, at the
    best-validation epoch), ``seeds``, ``epochs`` (maximum), ``selection``, ``label``,
    ``chosen``; each experiment ``source`` (the JSON's path), ``command``, ``threads``,
    ``wall_time_s``, ``majority_rate``, ``smoke`` and ``paired``. Files of another protocol
    are listed under ``"skipped"``.

    Raises:
        ValueError: two files describe the same experiment name.
    """
    experiments: dict[str, Any] = {}
    skipped: list[str] = []
    for path in sorted(Path(p) for p in paths):
        data = json.loads(Path(path).read_text())
        if (data.get("protocol") or {}).get("version") != PROTOCOL_VERSION or "methods" not in data:
            skipped.append(str(path))
            continue
        name = data["task"]
        if name in experiments:
            raise ValueError(
                f"experiment {name!r} appears twice: {experiments[name]['source']} and {path}"
            )
        proto = data["protocol"]
        methods = {}
        for key, m in data["methods"].items():
            acc = m["summary"]["test_accuracy"]
            methods[key] = {
                "label": m["label"],
                "test_acc_mean": acc["mean"],
                "test_acc_std": acc["std"],
                "seeds": m["seeds"],
                "epochs": m["epochs"],
                "selection": proto["selection"],
                "chosen": m["chosen"],
                "search_trials": m["budget"],
                "search_at_edge": (m.get("search_info") or {}).get("at_edge", []),
            }
        experiments[name] = {
            "title": data.get("title", name),
            "source": str(path),
            "command": (data.get("extra") or {}).get("command"),
            "smoke": bool((data.get("extra") or {}).get("smoke")),
            "threads": proto.get("threads"),
            "wall_time_s": data.get("wall_time"),
            "majority_rate": data.get("majority_rate"),
            "protocol": {k: v for k, v in proto.items() if k != "selection"},
            "methods": methods,
            "paired": [
                {k: p[k] for k in ("method", "baseline", "mean", "std", "ci")}
                for p in data.get("paired", [])
            ],
        }
    return {"protocol": PROTOCOL_VERSION, "experiments": experiments, "skipped": skipped}


def summary_markdown(index: Mapping[str, Any]) -> str:
    """The table of :func:`summary_index`: one row per experiment, one column per method
    family (test accuracy at the best-validation epoch, mean ± std over seeds)."""
    cols: list[str] = []
    for exp in index["experiments"].values():
        for key in exp["methods"]:
            if key not in cols:
                cols.append(key)
    order = {k: i for i, k in enumerate(METHOD_ORDER)}
    cols.sort(key=lambda k: order.get(k, len(order)))
    lines = [
        "| experiment | majority | " + " | ".join(_label(k) for k in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for name, exp in index["experiments"].items():
        cells = []
        for k in cols:
            m = exp["methods"].get(k)
            cells.append(
                "—"
                if m is None or m["test_acc_mean"] is None
                else f"{m['test_acc_mean']:.3f} ± {m['test_acc_std']:.3f}"
            )
        maj = exp.get("majority_rate")
        lines.append(
            f"| {name} | {'' if maj is None else f'{maj:.3f}'} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def write_results(results: Mapping[str, Any], out: str | Path, stem: str) -> dict[str, Path]:
    """Write ``STEM.png`` (if there are curves), ``STEM.md`` (table) and ``STEM.json`` (raw
    results, written last) into ``out`` (created). Returns the paths by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    if results.get("methods") and any(
        r.get("curve") for m in results["methods"].values() for r in m.get("runs", [])
    ):
        paths["png"] = plot_curves(results, out / f"{stem}.png")
    table = results.get("table") or markdown_table(results)
    paths["md"].write_text(table)
    # the JSON last: its presence means the run is complete
    paths["json"].write_text(json.dumps(_jsonable(results), indent=1) + "\n")
    return paths


# --------------------------------------------------------------------- command line
def add_common_arguments(
    parser: argparse.ArgumentParser, *, default_backends: Sequence[str]
) -> argparse.ArgumentParser:
    """The options every experiment script shares.

    ``--seeds N`` (seeds 0..N-1), ``--smoke`` (tiny run for CI), ``--out DIR``,
    ``--backend NAME`` (repeatable; the QP-SBGD columns), ``--annealer-config FILE`` (TOML
    with an ``[annealer]`` table: its backend and run settings), ``--num-reads``,
    ``--num-sweeps``, ``--methods`` (comma-separated keys), ``--threads`` (torch and numba),
    ``--jobs`` (worker processes), ``--patience``, ``--search-fraction``, ``--max-extensions``,
    ``--resume-dir`` (the trial store, :mod:`bnn.trial_store`).
    """
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    parser.add_argument("--smoke", action="store_true", help="tiny run (seconds), for CI")
    parser.add_argument("--out", default="results", help="output folder")
    parser.add_argument(
        "--backend",
        action="append",
        default=None,
        help=f"annealer backend of a QP-SBGD column (repeatable; default {list(default_backends)})",
    )
    parser.add_argument(
        "--annealer-config", default=None, help="TOML file with an [annealer] table"
    )
    parser.add_argument("--num-reads", type=int, default=None, help="annealer reads per problem")
    parser.add_argument("--num-sweeps", type=int, default=None, help="annealer sweeps per read")
    parser.add_argument(
        "--methods", default=None, help="comma-separated method keys to run (default: all)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and numba threads per process, fixed and recorded (numbers depend on it)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="methods run in this many worker processes"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping: epochs without a better validation score (default: the script's)",
    )
    parser.add_argument(
        "--search-fraction",
        type=float,
        default=None,
        help="search runs last this fraction of the final epochs, for every method",
    )
    parser.add_argument(
        "--max-extensions",
        type=int,
        default=3,
        help="rounds of grid extension when a chosen value sits on an edge",
    )
    parser.add_argument(
        "--resume-dir",
        default=None,
        action=_ResumeDirAction,
        help="keep every finished training run in this folder and reuse it when the same "
        "command runs again (resume after an interruption; bnn/trial_store.py)",
    )
    parser.set_defaults(_default_backends=list(default_backends))
    return parser


class _ResumeDirAction(argparse.Action):
    """``--resume-dir DIR``: make ``DIR`` this process's trial store (:mod:`bnn.trial_store`)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from bnn.trial_store import use_store

        try:
            use_store(values)
        except ValueError as exc:
            parser.error(f"{option_string}: {exc}")
        setattr(namespace, self.dest, values)


def annealer_settings(
    args: argparse.Namespace, defaults: Mapping[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """Backends and shared annealer settings from the parsed arguments.

    Precedence: ``--num-reads``/``--num-sweeps`` over the ``--annealer-config`` file over
    ``defaults``. The file's ``backend`` becomes the only QP-SBGD column unless ``--backend``
    is given.

    Raises:
        ConfigError: invalid annealer config file.
        ValueError: a non-positive ``--seeds``, ``--num-reads``, ``--num-sweeps``,
            ``--threads``, ``--jobs`` or ``--patience``; a ``--search-fraction`` outside
            (0, 1]; a negative ``--max-extensions``.
    """
    from qsgd.config import AnnealerConfig

    if args.seeds < 1:
        raise ValueError(f"--seeds must be a positive int (got {args.seeds})")
    for flag in ("threads", "jobs", "patience"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be a positive int (got {value})")
    frac = getattr(args, "search_fraction", None)
    if frac is not None and not 0 < frac <= 1:
        raise ValueError(f"--search-fraction must be in (0, 1] (got {frac})")
    if getattr(args, "max_extensions", 0) < 0:
        raise ValueError(f"--max-extensions must be an int >= 0 (got {args.max_extensions})")
    settings = dict(defaults)
    backends = list(args.backend) if args.backend else None
    if args.annealer_config:
        cfg = AnnealerConfig.from_toml(Path(args.annealer_config))
        file_settings = cfg.model_dump(exclude_defaults=True)
        backends = backends or [cfg.backend]
        file_settings.pop("backend", None)
        settings.update(file_settings)
    for flag, key in (("num_reads", "num_reads"), ("num_sweeps", "num_sweeps")):
        value = getattr(args, flag)
        if value is not None:
            if value < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be a positive int (got {value})")
            settings[key] = value
    settings.pop("seed", None)  # QPSBGD seeds every step from the run's seed
    return backends or list(args._default_backends), settings


def command_line(script: str | None = None, argv: Sequence[str] | None = None) -> str:
    """The command that produced the results: ``python SCRIPT ARGS`` (default: ``sys.argv``).

    Example:
        >>> command_line("examples/gcn.py", ["--seeds", "5"])
        'python examples/gcn.py --seeds 5'
    """
    if argv is None:
        args = list(sys.argv)
    else:
        args = [script or sys.argv[0], *argv]
    if args:
        path = Path(args[0])
        if path.is_absolute() and path.is_relative_to(Path.cwd()):
            args[0] = str(path.relative_to(Path.cwd()))
    return "python " + " ".join(shlex.quote(a) for a in args)


def environment(
    threads: int | None = None, numba_threads: int | None | str = "query"
) -> dict[str, Any]:
    """Versions and machine facts stored with the results (thread counts included).

    ``numba_threads="query"`` asks numba (which starts its OpenMP pool: a process that will
    still fork must pass the count instead)."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import numba

        env["numba"] = numba.__version__
        env["numba_threads"] = (
            numba.get_num_threads() if numba_threads == "query" else numba_threads
        )
    except ImportError:  # pragma: no cover
        pass
    # numba's OpenMP threading layer, started by the query above, resets the process's OpenMP
    # thread count (torch's): put torch's back, the numbers of later runs depend on it
    torch.set_num_threads(env["torch_threads"])
    return env
