"""One training run, the grid search and the seeded runs of one method.

:func:`train_once` trains one setting with one seed (model selection at the best-validation
epoch, early stopping, the :mod:`bnn.trial_store` cache); :func:`search` tries every setting and
extends an axis whose choice sits on an edge; :func:`run_method` is the search followed by the
seeded runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from bnn.experiments.methods import BOUNDS, PROTOCOL_VERSION, Method, Task, make_grid
from bnn.experiments.report import _jsonable, summarize


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


class _Curve:
    """The ``fit`` callback of :func:`train_once`: the per-epoch curve, the best-validation
    epoch, early stopping (raises :class:`_EarlyStop`) and the summed solver time."""

    def __init__(self, patience: int | None, epochs: int) -> None:
        self.patience, self.epochs = patience, epochs
        self.curve: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.since = 0
        self.solver = 0.0

    def __call__(self, kind: str, record: Mapping[str, Any]) -> None:
        if kind == "step":
            self.solver += record.get("solver_time") or 0.0
            return
        point = {k: record.get(k) for k in _CURVE_KEYS}
        self.curve.append(point)
        if self.best is None or _score(point) > _score(self.best):
            self.best, self.since = point, 0
        else:
            self.since += 1
        if (
            self.patience is not None
            and self.since >= self.patience
            and point["epoch"] < self.epochs
        ):
            raise _EarlyStop

    def record(
        self, *, seed: int, hparams: Mapping[str, Any], epochs: int, max_batches: int | None
    ) -> dict[str, Any]:
        """The run's record without its timings and curve (best-validation epoch numbers)."""
        best, last = self.best, self.curve[-1]
        return {
            "seed": seed,
            "hparams": dict(hparams),
            "epochs": epochs,
            "epochs_run": len(self.curve),
            "best_epoch": best["epoch"],
            "max_batches_per_epoch": max_batches,
            "train_loss": last["train_loss"],
            "val_accuracy": best["val_accuracy"],
            "val_loss": best["val_loss"],
            "test_accuracy": best["test_accuracy"],
            "test_loss": best["test_loss"],
            "last": {
                k: last[k] for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss")
            },
        }


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
    watch = _Curve(patience, epochs)
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
            callbacks=[watch],
            handle_signals=False,
        )
    except _EarlyStop:
        pass
    wall = time.perf_counter() - t0
    record = watch.record(seed=seed, hparams=hparams, epochs=epochs, max_batches=max_batches)
    record.update(
        wall_time=wall,
        wall_time_per_epoch=wall / max(len(watch.curve), 1),
        solver_time=watch.solver,
        curve=watch.curve,
    )
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


def _trial(hp: Mapping[str, Any], recs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One search setting's record: its run's figures, or with several search seeds the mean
    validation accuracy and loss (the score), summed epochs and wall time, and each run."""
    keys = ("val_accuracy", "val_loss", "best_epoch", "epochs_run", "wall_time")
    if len(recs) == 1:
        return {"hparams": dict(hp), **{k: recs[0][k] for k in keys}}
    return {
        "hparams": dict(hp),
        "val_accuracy": _mean([r["val_accuracy"] for r in recs]),
        "val_loss": _mean([r["val_loss"] for r in recs]),
        "best_epoch": _mean([r["best_epoch"] for r in recs]),
        "epochs_run": sum(r["epochs_run"] for r in recs),
        "wall_time": sum(r["wall_time"] for r in recs),
        "runs": [{"seed": r["seed"], **{k: r[k] for k in keys}} for r in recs],
    }


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of finite values; None (a failed score) if any is missing or not finite."""
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return float(sum(values) / len(values))


def _hp_key(hp: Mapping[str, Any]) -> tuple:
    return tuple(sorted(hp.items()))


def search(
    task: Task, method: Method, *, seed: int, epochs: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Try every setting (``task.search_seeds`` runs from the search seed on,
    ``task.search_epoch_count()`` epochs, early stopping as the final runs); pick the best
    validation score at the best epoch (the mean over the runs of a setting).

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
    n_seeds = task.search_seeds

    def run(points: Sequence[Mapping[str, Any]]) -> None:
        for hp in points:
            if _hp_key(hp) in tried:
                continue
            tried.add(_hp_key(hp))
            recs = [train_once(task, method, hp, seed + k, epochs=epochs) for k in range(n_seeds)]
            trials.append(_trial(hp, recs))

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
