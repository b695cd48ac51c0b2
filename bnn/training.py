"""The fit loop: seeded training with layer-wise schedules, checkpoints, records and resume.

Two entry points:

* :func:`fit` takes a model, an optimizer and a dataset (the paper-experiment scripts use it
  directly) and returns a summary dict;
* :func:`train_from_config` builds all three from a validated :class:`bnn.config.RunConfig`
  and runs :func:`fit` in the config's run directory (``bnn train`` calls it).

Data flow of one run::

    RunConfig -> build_dataset / build_model / build_optimizer -> fit
        per step:  closure (forward, loss, backward, freeze inactive layers) -> optimizer.step
                   -> step record (loss, accuracy, per-layer flip ratio, QUBO energy, solver time)
        per epoch: validation/test evaluation -> epoch record -> checkpoint.pt
        end:       summary.json, PNG plots

Layer-wise schedules (``schedule``):

* ``"all"``: every binary layer is updated at every step;
* ``"round_robin"``: binary layer ``step % L`` only (so one layer's problems go to a scarce QPU
  per step);
* ``"greedy"``: layer 1 alone for ``greedy_epochs_per_layer`` epochs, then layer 2 (layer 1
  frozen), ...; after the last layer's turn all layers train together.

Non-binary parameters (batch norm, output scale, full-precision layers) are updated at every
step. A binary layer outside the step's active set is frozen by dropping its gradient
(``p.grad = None``, which every torch optimizer skips) and, for :class:`qsgd.optimizer.QPSBGD`,
by zeroing its captured output gradient (QPSBGD skips a layer whose gradient rows are all zero).

Reproducibility: the same seed gives the same records. The data order of epoch ``e`` is drawn
from a generator seeded by ``(seed, e)``, the global torch/numpy/python RNG states go into every
checkpoint, and QPSBGD derives its annealer seed from ``(seed, step, layer)``; so a run
interrupted (SIGINT/SIGTERM, at a step boundary) and resumed ends with exactly the records of
an uninterrupted run, wall-clock times aside. Torch's CPU thread count is part of that state
(its float reductions split by thread): :func:`fit` keeps the count it started with for the
whole run, whatever a backend's native thread pool does to it.

Run directories: a directory is kept only once it holds a checkpoint of the run. A fresh run
that fails before its first checkpoint (bad data, a backend that fails at the first solve, ...)
leaves no folder behind (:func:`train_from_config` removes what it created, and only that), so
the corrected command can run into the same ``--run-dir``.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bnn.baselines import latent_forward
from bnn.checkpoint import (
    CHECKPOINT_NAME,
    PREVIOUS_NAME,
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from bnn.config import SCHEDULES, QPSBGDConfig, RunConfig, incompatible_changes
from bnn.records import (
    METRICS_NAME,
    SUMMARY_NAME,
    MetricsLog,
    ProgressBar,
    TensorBoardLogger,
    jsonable,
    plot_run,
    resolve_quiet,
    write_summary,
)
from qsgd.errors import ConfigError

__all__ = [
    "CONFIG_NAME",
    "Callback",
    "seed_everything",
    "build_dataset",
    "build_model",
    "build_optimizer",
    "evaluate",
    "fit",
    "train_from_config",
    "resume_run",
    "evaluate_run",
    "run_files",
]

CONFIG_NAME = "config.toml"
#: ``callback(event, record)`` with event ``"step"`` or ``"epoch"``; called after the record is written.
Callback = Callable[[str, Mapping[str, Any]], None]


# --------------------------------------------------------------------- seeding
def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG and torch's global RNG with ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int (got {seed!r})")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds the global RNG on purpose
    torch.manual_seed(seed)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The data-order generator of ``epoch`` (independent of how many epochs ran before)."""
    child = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(child[0]) << 32 | int(child[1]))


# --------------------------------------------------------------------- builders
def build_dataset(cfg: RunConfig) -> Any:
    """Load ``cfg.data`` with :func:`bnn.data.get_dataset`.

    Raises:
        ConfigError: unknown dataset or bad option.
        FileNotFoundError: a dataset file is missing (the message names the path).
    """
    from bnn.data import get_dataset

    kwargs = dict(cfg.data.options)
    if cfg.data.root is not None:
        kwargs["root"] = cfg.data.root
    try:
        return get_dataset(cfg.data.name, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"data.options rejected by dataset {cfg.data.name!r}: {exc}") from None


def _is_graph(dataset: Any) -> bool:
    return hasattr(dataset, "edge_index")


def _model_factories() -> dict[str, tuple[Callable[..., nn.Module], bool]]:
    from bnn.models import BinaryCNN, BinaryGCN, BinaryMLP

    def mlp(ds: Any, m: Any) -> nn.Module:
        return BinaryMLP(ds.num_features, m.hidden, ds.num_classes, **_model_kwargs(m))

    def gcn(ds: Any, m: Any) -> nn.Module:
        return BinaryGCN(ds.num_features, m.hidden, ds.num_classes, **_model_kwargs(m))

    def cnn(ds: Any, m: Any) -> nn.Module:
        return BinaryCNN(ds.num_classes, **_model_kwargs(m))

    return {"mlp": (mlp, False), "gcn": (gcn, True), "cnn": (cnn, False)}


def _model_kwargs(m: Any) -> dict[str, Any]:
    return dict(
        binary=m.binary,
        first_layer_binary=m.first_layer_binary,
        last_layer_binary=m.last_layer_binary,
        batchnorm=m.batchnorm,
        **m.options,
    )


def build_model(cfg: RunConfig, dataset: Any) -> nn.Module:
    """Build ``cfg.model`` for ``dataset`` (input and output sizes from the dataset).

    Seed the global RNG first (:func:`seed_everything`) for a reproducible initialisation.

    Raises:
        ConfigError: the architecture does not fit the dataset, or a bad model option.
    """
    factory, needs_graph = _model_factories()[cfg.model.arch]
    if needs_graph != _is_graph(dataset):
        kind = "a graph" if _is_graph(dataset) else "a tabular"
        hint = "gcn" if _is_graph(dataset) else "mlp or cnn"
        raise ConfigError(
            f"model.arch {cfg.model.arch!r} does not fit data.name {cfg.data.name!r}, which is "
            f"{kind} dataset (expected model.arch = {hint})"
        )
    try:
        return factory(dataset, cfg.model)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model options rejected: {exc}") from None


def build_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Build ``cfg.optimizer`` over ``model`` with :func:`bnn.baselines.make_optimizer`.

    For ``qpsbgd`` the ``[annealer]`` section gives the backend and its options, and the
    annealer seed is ``annealer.seed`` or else ``train.seed``.

    Raises:
        ConfigError: unknown backend (lists the known ones) or an option the optimizer or the
            backend rejects.
    """
    from bnn.baselines import make_optimizer

    options = cfg.optimizer.constructor_options()
    if isinstance(cfg.optimizer, QPSBGDConfig):
        options.update(
            backend=cfg.annealer,  # QPSBGD splits it into sampler and run options
            seed=cfg.train.seed if cfg.annealer.seed is None else cfg.annealer.seed,
            layer_schedule="all",  # the fit loop applies train.schedule
        )
    try:
        return make_optimizer(cfg.optimizer.name, model, **options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"optimizer {cfg.optimizer.name!r} rejected its options: {exc}") from None


# --------------------------------------------------------------------- data views
class _Data:
    """Uniform access to tabular and graph datasets (graphs train full-batch)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.graph = _is_graph(dataset)
        if self.graph:
            from bnn.layers import normalized_adjacency

            self.adj = normalized_adjacency(dataset.edge_index, dataset.num_nodes)
            valid = getattr(dataset, "label_valid", None)
            valid = torch.ones_like(dataset.train_mask) if valid is None else valid
            self.masks = {
                s: getattr(dataset, f"{s}_mask") & valid for s in ("train", "val", "test")
            }
            self.num_train = int(self.masks["train"].sum())
            y_train = dataset.y[self.masks["train"]]
        else:
            self.num_train = int(dataset.x_train.shape[0])
            y_train = dataset.y_train
        if self.num_train == 0:
            raise ConfigError(f"dataset {getattr(dataset, 'name', '?')!r} has no training examples")
        labels, counts = torch.unique(y_train, return_counts=True)
        self.majority_class = int(labels[torch.argmax(counts)])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Inputs and labels of a tabular split (None when empty)."""
        x, y = getattr(self.dataset, f"x_{name}"), getattr(self.dataset, f"y_{name}")
        return None if y.numel() == 0 else (x, y)

    def majority_rate(self, split: str) -> float | None:
        if self.graph:
            y = self.dataset.y[self.masks[split]]
        else:
            y = getattr(self.dataset, f"y_{split}")
        if y.numel() == 0:
            return None
        # accuracy of the best constant prediction on this split (its most frequent class);
        # the training majority class is arbitrary when the training labels are balanced (Cora)
        return float(torch.unique(y, return_counts=True)[1].max()) / y.numel()

    def batches(self, seed: int, epoch: int, batch_size: int, cap: int | None) -> list[Any]:
        """Index tensors of the mini-batches of ``epoch`` (graphs: one full batch)."""
        if self.graph:
            return [None]
        order = torch.randperm(self.num_train, generator=_epoch_generator(seed, epoch))
        chunks = list(torch.split(order, batch_size))
        if len(chunks) > 1 and chunks[-1].numel() < 2:  # batch norm needs 2 rows
            chunks = chunks[:-1]
        return chunks[:cap] if cap is not None else chunks

    def forward_train(self, model: nn.Module, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels of the training batch ``index``."""
        if self.graph:
            out = model(self.dataset.x, self.adj)
            mask = self.masks["train"]
            return out[mask], self.dataset.y[mask]
        return model(self.dataset.x_train[index]), self.dataset.y_train[index]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Any,
    split: str,
    *,
    loss_fn: Callable[..., torch.Tensor] | None = None,
) -> dict[str, float] | None:
    """Loss and accuracy of ``model`` (in eval mode) on ``split`` (``"train"``, ``"val"``, ``"test"``).

    Returns:
        ``{"loss": ..., "accuracy": ...}``, or None if the split is empty.
    """
    data = dataset if isinstance(dataset, _Data) else _Data(dataset)
    loss_fn = loss_fn or F.cross_entropy
    was_training = model.training
    model.eval()
    try:
        if data.graph:
            mask = data.masks[split]
            if not bool(mask.any()):
                return None
            out = model(data.dataset.x, data.adj)[mask]
            y = data.dataset.y[mask]
        else:
            xy = data.split(split)
            if xy is None:
                return None
            out, y = model(xy[0]), xy[1]
        return {
            "loss": float(loss_fn(out, y)),
            "accuracy": float((out.argmax(dim=1) == y).float().mean()),
        }
    finally:
        model.train(was_training)


# --------------------------------------------------------------------- schedules
class _Schedule:
    """Which binary layers train at a given epoch/step."""

    def __init__(self, kind: str, names: Sequence[str], epochs_per_layer: int) -> None:
        if kind not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(map(repr, SCHEDULES))} (got {kind!r})"
            )
        if (
            isinstance(epochs_per_layer, bool)
            or not isinstance(epochs_per_layer, int)
            or epochs_per_layer < 1
        ):
            raise ValueError(
                f"greedy_epochs_per_layer must be a positive int (got {epochs_per_layer!r})"
            )
        self.kind, self.names, self.k = kind, list(names), epochs_per_layer

    def active(self, epoch: int, step: int) -> list[str]:
        if not self.names or self.kind == "all":
            return list(self.names)
        if self.kind == "round_robin":
            return [self.names[step % len(self.names)]]
        phase = epoch // self.k
        return [self.names[phase]] if phase < len(self.names) else list(self.names)

    def describe(self) -> str:
        if self.kind == "greedy":
            return (
                f"schedule greedy: {self.k} epoch(s) per binary layer in order "
                f"{', '.join(self.names)}, then all layers"
            )
        if self.kind == "round_robin":
            return (
                f"schedule round_robin: one binary layer per step, cycling {', '.join(self.names)}"
            )
        return f"schedule all: every binary layer ({', '.join(self.names) or 'none'}) each step"


def _freeze(layers: Mapping[str, nn.Module], inactive: Iterable[str]) -> None:
    """Drop the update of inactive binary layers for this step (see the module docstring)."""
    for name in inactive:
        layer = layers[name]
        layer.weight.grad = None
        grad_out = getattr(layer, "captured_grad_out", None)
        if grad_out is not None:
            layer.captured_grad_out = torch.zeros_like(grad_out)


# --------------------------------------------------------------------- signals
class _StopRequest:
    """Turns SIGINT/SIGTERM into a request to stop at the next step boundary."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signum = signum


@contextmanager
def _signal_guard(enabled: bool):
    request = _StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, request)
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------- the fit loop
def _sign_snapshot(layers: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {name: layer.weight.detach() >= 0 for name, layer in layers.items()}


def _annealer_stats(optimizer: Any) -> tuple[float | None, float | None]:
    """Mean best QUBO energy over the updated layers and total solver time of the last step.

    Only records that name an annealer ``backend`` (QPSBGD's) count; baselines give ``None``.
    """
    stats = getattr(optimizer, "last_stats", None)
    if not isinstance(stats, list):
        return None, None
    solved = [
        s for s in stats if isinstance(s, Mapping) and s.get("backend") and not s.get("skipped")
    ]
    if not solved:
        return None, None
    energies = [float(s["best_energy"]) for s in solved if s.get("best_energy") is not None]
    energies = [e for e in energies if math.isfinite(e)]
    solver = sum(float(s.get("wall_time") or 0.0) for s in solved)
    return (float(np.mean(energies)) if energies else None), solver


def _solved_by(optimizer: Any) -> dict[str, int] | None:
    """``{backend: problems}`` solved in the last step (QPSBGD's ``solved_by_counts``), or None.

    This is the backend that actually solved the problems: a QPU backend's fallback shows up
    here, not under the configured backend name.
    """
    stats = getattr(optimizer, "last_stats", None)
    if not isinstance(stats, list):
        return None
    counts: dict[str, int] = {}
    for s in stats:
        if isinstance(s, Mapping) and isinstance(s.get("solved_by_counts"), Mapping):
            for k, v in s["solved_by_counts"].items():
                counts[str(k)] = counts.get(str(k), 0) + int(v)
    return counts or None


QPU_CAP_STATUS = "qpu_cap_reached"
"""``status`` of a run stopped by ``annealer.max_qpu_seconds``/``max_qpu_calls`` (resumable)."""


def _qpu_step(optimizer: Any) -> dict[str, Any]:
    """QPU figures of the last step, summed over its layers (QPSBGD's ``last_stats``).

    ``qpu_calls``, ``problems_per_call`` (mean over the step's calls; None without calls),
    ``qpu_access_time`` (seconds) and ``chain_break_fraction`` (mean over problems; None when
    no problem went through a QPU).
    """
    stats = getattr(optimizer, "last_stats", None)
    calls, problems, access, cbf_sum, cbf_n = 0, 0.0, 0.0, 0.0, 0
    for s in stats if isinstance(stats, list) else []:
        if not isinstance(s, Mapping) or s.get("skipped"):
            continue
        c = int(s.get("qpu_calls") or 0)
        calls += c
        if c and s.get("problems_per_call") is not None:
            problems += float(s["problems_per_call"]) * c
        access += float(s.get("qpu_access_time") or 0.0)
        if s.get("chain_break_fraction") is not None:
            k = int(s.get("problems") or 1)
            cbf_sum += float(s["chain_break_fraction"]) * k
            cbf_n += k
    return {
        "qpu_calls": calls,
        "problems_per_call": problems / calls if calls else None,
        "qpu_access_time": access,
        "chain_break_fraction": cbf_sum / cbf_n if cbf_n else None,
    }


def _qpu_cap_hit(
    optimizer: Any, max_qpu_seconds: float | None, max_qpu_calls: int | None
) -> str | None:
    """Why the QPU cap stops the run before the next step, or None.

    Only a QPU backend is capped: a run resumed on a classical backend is never stopped.
    """
    from qsgd.samplers.dwave import QPU_BACKENDS

    totals = getattr(optimizer, "qpu_totals", None)
    if (
        not isinstance(totals, Mapping)
        or getattr(optimizer, "backend_name", None) not in QPU_BACKENDS
    ):
        return None
    seconds, calls = float(totals.get("qpu_access_time", 0.0)), int(totals.get("qpu_calls", 0))
    if max_qpu_seconds is not None and seconds >= max_qpu_seconds:
        return (
            f"QPU access time {seconds:.4g} s reached annealer.max_qpu_seconds="
            f"{max_qpu_seconds:g} ({calls} QPU calls)"
        )
    if max_qpu_calls is not None and calls >= max_qpu_calls:
        return (
            f"QPU calls {calls} reached annealer.max_qpu_calls={max_qpu_calls} "
            f"({seconds:.4g} s of QPU access time)"
        )
    return None


def _add_counts(total: dict[str, int], counts: Mapping[str, int] | None) -> dict[str, int]:
    for k, v in (counts or {}).items():
        total[k] = total.get(k, 0) + int(v)
    return total


def _train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: _Data,
    index: Any,
    loss_fn: Callable[..., torch.Tensor],
    layers: Mapping[str, nn.Module],
    inactive: Sequence[str],
) -> dict[str, torch.Tensor]:
    """One optimizer step on batch ``index``; returns the batch's logits, labels and loss."""
    holder: dict[str, torch.Tensor] = {}

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        if getattr(optimizer, "trains_latent", False):  # ProxQuant: loss at the real weights
            with latent_forward(model):
                out, y = data.forward_train(model, index)
        else:
            out, y = data.forward_train(model, index)
        loss = loss_fn(out, y)
        loss.backward()
        _freeze(layers, inactive)
        holder.update(out=out.detach(), y=y, loss=loss.detach())
        return loss

    optimizer.step(closure)
    return holder


def _new_accum(names: Sequence[str]) -> dict[str, Any]:
    return {
        "loss_sum": 0.0,
        "correct": 0,
        "count": 0,
        "steps": 0,
        "flip_sum": {n: 0.0 for n in names},
        "flip_steps": {n: 0 for n in names},
        "energy_sum": 0.0,
        "energy_count": 0,
        "solver_time": 0.0,
        "solved_by_counts": {},
        "qpu_calls": 0,
        "qpu_access_time": 0.0,
        "cbf_sum": 0.0,
        "cbf_steps": 0,
        "time": 0.0,
    }


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: Any,
    *,
    epochs: int,
    batch_size: int = 32,
    seed: int = 0,
    schedule: str = "all",
    greedy_epochs_per_layer: int = 1,
    eval_interval: int = 1,
    max_batches_per_epoch: int | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    log_steps: bool = True,
    plots: bool = True,
    tensorboard: bool = False,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    callbacks: Sequence[Callback] = (),
    resume: Mapping[str, Any] | None = None,
    config: RunConfig | None = None,
    name: str | None = None,
    handle_signals: bool = True,
    max_qpu_seconds: float | None = None,
    max_qpu_calls: int | None = None,
) -> dict[str, Any]:
    """Train ``model`` with ``optimizer`` on ``dataset``; returns the run summary.

    Tabular datasets train in shuffled mini-batches of ``batch_size`` on ``x_train``; graph
    datasets train full-batch on the training mask. After every ``eval_interval`` epochs (and
    the last) the model is evaluated on the validation and test data (loss, accuracy) and the
    majority rate is reported next to the accuracy.

    Args:
        model: A model from :mod:`bnn.models` (or any module mapping inputs to logits).
        optimizer: A torch optimizer, e.g. :class:`qsgd.optimizer.QPSBGD` or a baseline.
        dataset: A ``bnn.data.TabularDataset`` or ``GraphDataset``.
        epochs: Total number of epochs (a resumed run continues up to it).
        batch_size: Mini-batch size (tabular data).
        seed: Seeds the global RNGs at the start (unless resuming) and the data order.
        schedule: ``"all"``, ``"round_robin"`` or ``"greedy"`` (see the module docstring).
        greedy_epochs_per_layer: Epochs per binary layer in the greedy schedule.
        eval_interval: Evaluate every this many epochs.
        max_batches_per_epoch: Cap on mini-batches per epoch (quick runs); None: all.
        run_dir: If given: ``metrics.jsonl``, ``checkpoint.pt`` (every epoch and on
            SIGINT/SIGTERM), ``summary.json`` and plots go there. It must exist.
        progress: Show a tqdm bar per epoch.
        log_steps: Write a ``metrics.jsonl`` record per step (not only per epoch).
        plots: Write PNG plots at the end (needs ``run_dir``).
        tensorboard: Also log scalars to TensorBoard in ``run_dir/tensorboard``.
        loss_fn: ``loss_fn(logits, labels)``; default cross-entropy.
        callbacks: Called as ``callback("step" | "epoch", record)``.
        resume: A checkpoint (:func:`bnn.checkpoint.load_checkpoint`) to continue from.
        config: The run's config, stored in checkpoints and the summary.
        name: Label of the run (default: ``config.name`` or ``"run"``).
        handle_signals: Catch SIGINT/SIGTERM (main thread only): finish the step, checkpoint,
            return with ``status = "interrupted"``. A second SIGINT stops at once.
        max_qpu_seconds, max_qpu_calls: Caps on the optimizer's QPU use over the whole run
            (``optimizer.qpu_totals``, kept in checkpoints). Checked before every step while the
            optimizer's backend is a QPU backend: once a total has reached its cap the run
            checkpoints and returns with ``status = "qpu_cap_reached"`` and ``stop_reason``.

    Returns:
        The summary (also written to ``run_dir/summary.json``): ``status``
        (``"completed"``/``"interrupted"``/``"qpu_cap_reached"``, with ``stop_reason``),
        ``epochs_completed``, ``steps``, ``final`` (the last
        evaluation: ``{train,val,test}_{loss,accuracy}``), ``best_val_accuracy``,
        ``majority_rate``, timings, ``files``, ``backend`` (the configured one) and
        ``solved_by``/``solved_by_counts`` (which backend actually solved how many QUBO
        problems over the completed epochs, e.g. ``{"neal": 1200}`` when a QPU's fallback
        took over; every step and epoch record of ``metrics.jsonl`` carries the same two keys),
        and the QPU figures ``qpu_calls``, ``qpu_access_time`` (run totals),
        ``problems_per_call`` and ``chain_break_fraction`` (also in every step and epoch record).

    Raises:
        ValueError: bad arguments (the message names them).
        CheckpointError: ``resume`` does not match the model or optimizer.

    Shape:
        Tabular: ``x_train`` ``(n, num_features)`` -> logits ``(batch, num_classes)``;
        graph: ``x`` ``(N, D)`` -> logits ``(N, num_classes)``, loss on the training mask.

    Example:
        >>> from bnn.baselines import make_optimizer
        >>> from bnn.data import get_dataset
        >>> from bnn.models import BinaryMLP
        >>> ds = get_dataset("digits")
        >>> model = BinaryMLP(ds.num_features, [16], ds.num_classes)
        >>> summary = fit(model, make_optimizer("signsgd", model), ds,
        ...               epochs=2, batch_size=64, seed=0, progress=False)
        >>> summary["status"], summary["epochs_completed"]
        ('completed', 2)
    """
    for label, value, low in (
        ("epochs", epochs, 1),
        ("batch_size", batch_size, 1),
        ("eval_interval", eval_interval, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{label} must be an int >= {low} (got {value!r})")
    if max_batches_per_epoch is not None and (
        isinstance(max_batches_per_epoch, bool)
        or not isinstance(max_batches_per_epoch, int)
        or max_batches_per_epoch < 1
    ):
        raise ValueError(
            f"max_batches_per_epoch must be a positive int or None (got {max_batches_per_epoch!r})"
        )
    from bnn.layers import binary_layers

    layers = {n or "<model>": layer for n, layer in binary_layers(model)}
    plan = _Schedule(schedule, list(layers), greedy_epochs_per_layer)
    data = _Data(dataset)
    loss_fn = loss_fn or F.cross_entropy
    run_path = Path(run_dir) if run_dir is not None else None
    if run_path is not None and not run_path.is_dir():
        raise ValueError(f"run_dir must be an existing directory (got {str(run_path)!r})")
    label = name or (config.name if config is not None else "run")
    config_dict = config.to_dict() if config is not None else None

    # ---- state (fresh or resumed)
    if resume is None:
        seed_everything(seed)
        start_epoch, start_batch, step = 0, 0, 0
        history: list[dict[str, Any]] = []
        accum = _new_accum(list(layers))
        elapsed = 0.0
        metrics_keep: int | None = None
    else:
        try:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint does not match this model/optimizer: {' '.join(str(exc).split())[:300]}"
            ) from None
        restore_rng_state(resume["rng"])
        start_epoch, start_batch, step = (
            int(resume["epoch"]),
            int(resume["batch"]),
            int(resume["step"]),
        )
        history = [dict(r) for r in resume["history"]]
        accum = dict(resume["accum"])
        elapsed = float(resume.get("elapsed", 0.0))
        metrics_keep = int(resume["metrics_count"])
        if epochs < start_epoch:
            raise ValueError(
                f"epochs must be >= the {start_epoch} epochs already done when resuming (got {epochs})"
            )

    quiet = not progress
    log = _logger(quiet)
    metrics = MetricsLog(run_path / METRICS_NAME, keep=metrics_keep) if run_path else None
    tb = (
        TensorBoardLogger(run_path / "tensorboard", tensorboard and run_path is not None)
        if run_path
        else None
    )
    optimizer_name = (
        config.optimizer.name if config is not None else type(optimizer).__name__.lower()
    )
    backend = getattr(optimizer, "backend_name", None)
    log(
        f"training {label!r}: {optimizer_name}"
        + (f" on backend {backend!r}" if backend else "")
        + f", {epochs} epoch(s), seed {seed}; {plan.describe()}"
        + (f"; resuming at epoch {start_epoch + 1}, step {step}" if resume is not None else "")
    )

    def emit(kind: str, record: dict[str, Any]) -> None:
        if metrics is not None and (kind == "epoch" or log_steps):
            metrics.write(record)
        if tb is not None:
            tb.log(record, record["step"])
        for cb in callbacks:
            cb(kind, record)

    def checkpoint(epoch: int, batch: int, status: str) -> None:
        if run_path is None:
            return
        if metrics is not None:
            metrics.sync()
        save_checkpoint(
            run_path,
            {
                "epoch": epoch,
                "batch": batch,
                "step": step,
                "status": status,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": capture_rng_state(),
                "history": jsonable(history),
                "accum": jsonable(accum),
                "metrics_count": metrics.count if metrics is not None else 0,
                "elapsed": elapsed,
                "config": config_dict,
            },
        )

    status = "completed"
    stop_reason: str | None = None
    t_run = time.perf_counter() - elapsed
    model.train()
    # Torch's CPU thread count decides how its float reductions are split, so it must stay the
    # same for the whole run (and equal to the resumed run's): a native thread pool started
    # inside a step (numba's OpenMP layer calls omp_set_num_threads) may not change it.
    threads = torch.get_num_threads()
    try:
        with _signal_guard(handle_signals) as stop:
            for epoch in range(start_epoch, epochs):
                batches = data.batches(seed, epoch, batch_size, max_batches_per_epoch)
                first = start_batch if epoch == start_epoch else 0
                if first == 0:
                    accum = _new_accum(list(layers))
                epoch_active = plan.active(epoch, step)
                if plan.kind == "greedy" and (epoch % plan.k == 0 or epoch == start_epoch):
                    log(f"epoch {epoch + 1}: greedy schedule trains {', '.join(epoch_active)}")
                bar = ProgressBar(
                    len(batches), f"epoch {epoch + 1}/{epochs}", disable=quiet, initial=first
                )
                try:
                    for b in range(first, len(batches)):
                        cap = _qpu_cap_hit(optimizer, max_qpu_seconds, max_qpu_calls)
                        if cap is not None:
                            status, stop_reason = QPU_CAP_STATUS, cap
                            elapsed = time.perf_counter() - t_run
                            checkpoint(epoch, b, status)
                            break
                        t0 = time.perf_counter()
                        active = plan.active(epoch, step)
                        inactive = [n for n in layers if n not in active]
                        before = _sign_snapshot(layers)
                        if torch.get_num_threads() != threads:
                            torch.set_num_threads(threads)
                        holder = _train_step(
                            model, optimizer, data, batches[b], loss_fn, layers, inactive
                        )
                        after = _sign_snapshot(layers)
                        flips = {n: float((before[n] != after[n]).float().mean()) for n in active}
                        energy, solver = _annealer_stats(optimizer)
                        solved_by = _solved_by(optimizer)
                        qpu = _qpu_step(optimizer)
                        loss_value = float(holder["loss"])
                        n_rows = int(holder["y"].numel())
                        correct = int((holder["out"].argmax(dim=1) == holder["y"]).sum())
                        step += 1
                        dt = time.perf_counter() - t0
                        accum["loss_sum"] += loss_value * n_rows
                        accum["correct"] += correct
                        accum["count"] += n_rows
                        accum["steps"] += 1
                        for n, fr in flips.items():
                            accum["flip_sum"][n] += fr
                            accum["flip_steps"][n] += 1
                        if energy is not None:
                            accum["energy_sum"] += energy
                            accum["energy_count"] += 1
                        accum["solver_time"] += solver or 0.0
                        _add_counts(accum.setdefault("solved_by_counts", {}), solved_by)
                        accum["qpu_calls"] = accum.get("qpu_calls", 0) + qpu["qpu_calls"]
                        accum["qpu_problems"] = accum.get("qpu_problems", 0.0) + (
                            (qpu["problems_per_call"] or 0.0) * qpu["qpu_calls"]
                        )
                        accum["qpu_access_time"] = (
                            accum.get("qpu_access_time", 0.0) + qpu["qpu_access_time"]
                        )
                        if qpu["chain_break_fraction"] is not None:
                            accum["cbf_sum"] = (
                                accum.get("cbf_sum", 0.0) + qpu["chain_break_fraction"]
                            )
                            accum["cbf_steps"] = accum.get("cbf_steps", 0) + 1
                        accum["time"] += dt
                        record = {
                            "kind": "step",
                            "epoch": epoch + 1,
                            "step": step,
                            "batch": b + 1,
                            "loss": loss_value,
                            "accuracy": correct / max(n_rows, 1),
                            "active_layers": active,
                            "flip_ratio": flips,
                            "best_energy": energy,
                            "solver_time": solver,
                            "solved_by": "+".join(sorted(solved_by)) if solved_by else None,
                            "solved_by_counts": solved_by,
                            **qpu,
                            "time": dt,
                        }
                        emit("step", record)
                        bar.update(
                            {
                                "loss": f"{loss_value:.4f}",
                                "acc": f"{record['accuracy']:.3f}",
                                "E": None if energy is None else f"{energy:.3g}",
                                "t_solve": None if solver is None else f"{solver:.2f}s",
                            }
                        )
                        if stop.signum is not None:
                            status = "interrupted"
                            elapsed = time.perf_counter() - t_run
                            if b + 1 < len(batches):
                                checkpoint(epoch, b + 1, status)
                            break
                finally:
                    bar.close()
                if status == QPU_CAP_STATUS:
                    break  # the checkpoint above holds the progress
                if status == "interrupted" and accum["steps"] < len(batches):
                    break  # mid-epoch: the checkpoint above holds the epoch's progress
                # ---- end of epoch
                record = _epoch_record(
                    epoch, step, accum, epoch_active, data, model, loss_fn, layers
                )
                if (epoch + 1) % eval_interval == 0 or epoch + 1 == epochs:
                    record.update(_evaluation(model, data, loss_fn))
                history.append(record)
                emit("epoch", record)
                log(_epoch_line(record, epochs))
                elapsed = time.perf_counter() - t_run
                if status == "interrupted" and epoch + 1 == epochs:
                    status = "completed"  # the signal came with the very last step
                checkpoint(
                    epoch + 1,
                    0,
                    status if status == "interrupted" or epoch + 1 == epochs else "running",
                )
                if status == "interrupted":
                    break
    finally:
        if metrics is not None:
            metrics.close()
        if tb is not None:
            tb.close()
    elapsed = time.perf_counter() - t_run
    epochs_done = sum(1 for r in history if r["kind"] == "epoch")
    summary = _summary(
        label,
        status,
        epochs,
        epochs_done,
        step,
        seed,
        plan,
        optimizer_name,
        backend,
        history,
        data,
        elapsed,
        model,
        config_dict,
        run_path,
        getattr(optimizer, "qpu_totals", None),
    )
    summary["stop_reason"] = stop_reason
    if status == "interrupted":
        log(
            f"interrupted by signal {stop.signum}: checkpoint saved; resume with bnn train --resume {run_path}"
        )
    if status == QPU_CAP_STATUS:
        log(
            f"stopped: {stop_reason}; checkpoint saved; resume with bnn train --resume {run_path} "
            "--set annealer.max_qpu_seconds=<more> (or max_qpu_calls), or on another backend "
            "with --set annealer.backend=neal --set annealer.pack=false"
        )
    if run_path is not None:
        if plots and status == "completed":
            summary["files"] += [p.name for p in plot_run(run_path)]
        write_summary(run_path, summary)
    return summary


def _logger(quiet: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if not quiet:
            from tqdm.auto import tqdm

            tqdm.write(message, file=sys.stderr)

    return log


def _epoch_record(
    epoch: int,
    step: int,
    accum: Mapping[str, Any],
    active: list[str],
    data: _Data,
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    layers: Mapping[str, nn.Module],
) -> dict[str, Any]:
    count = max(int(accum["count"]), 1)
    flips = {
        n: accum["flip_sum"][n] / accum["flip_steps"][n]
        for n in layers
        if accum["flip_steps"].get(n)
    }
    return {
        "kind": "epoch",
        "epoch": epoch + 1,
        "step": step,
        "active_layers": active,
        "train_loss": accum["loss_sum"] / count,
        "train_accuracy": accum["correct"] / count,
        "majority_rate": data.majority_rate("test"),
        "flip_ratio": flips,
        "best_energy": accum["energy_sum"] / accum["energy_count"]
        if accum["energy_count"]
        else None,
        "solver_time": accum["solver_time"],
        "solved_by": "+".join(sorted(accum.get("solved_by_counts") or {})) or None,
        "solved_by_counts": dict(accum.get("solved_by_counts") or {}) or None,
        "qpu_calls": int(accum.get("qpu_calls", 0)),
        "qpu_access_time": float(accum.get("qpu_access_time", 0.0)),
        "problems_per_call": accum.get("qpu_problems", 0.0) / accum["qpu_calls"]
        if accum.get("qpu_calls")
        else None,
        "chain_break_fraction": accum["cbf_sum"] / accum["cbf_steps"]
        if accum.get("cbf_steps")
        else None,
        "epoch_time": accum["time"],
    }


def _evaluation(
    model: nn.Module, data: _Data, loss_fn: Callable[..., torch.Tensor]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in ("val", "test"):
        result = evaluate(model, data, split, loss_fn=loss_fn)
        if result is not None:
            out[f"{split}_loss"] = result["loss"]
            out[f"{split}_accuracy"] = result["accuracy"]
    return out


def _epoch_line(record: Mapping[str, Any], epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"train loss {record['train_loss']:.4f}"]
    parts.append(f"acc {record['train_accuracy']:.3f}")
    for split in ("val", "test"):
        if f"{split}_accuracy" in record:
            parts.append(f"{split} acc {record[f'{split}_accuracy']:.3f}")
    if record.get("majority_rate") is not None:
        parts.append(f"(majority {record['majority_rate']:.3f})")
    if record.get("best_energy") is not None:
        parts.append(f"E {record['best_energy']:.3g}, solver {record['solver_time']:.2f}s")
    return ", ".join(parts)


def _summary(
    label: str,
    status: str,
    epochs: int,
    epochs_done: int,
    steps: int,
    seed: int,
    plan: _Schedule,
    optimizer_name: str,
    backend: str | None,
    history: list[dict[str, Any]],
    data: _Data,
    elapsed: float,
    model: nn.Module,
    config: dict[str, Any] | None,
    run_path: Path | None,
    qpu_totals: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    qpu_totals = dict(qpu_totals or {})
    evaluated = [r for r in history if "test_accuracy" in r or "val_accuracy" in r]
    last_eval = evaluated[-1] if evaluated else {}
    last = history[-1] if history else {}
    final = {
        k: (last_eval if k.startswith(("val", "test")) else last).get(k)
        for k in (
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "test_loss",
            "test_accuracy",
        )
    }
    with_val = [r for r in history if r.get("val_accuracy") is not None]
    best = max(with_val, key=lambda r: r["val_accuracy"]) if with_val else None
    from bnn.layers import binary_parameters

    solved: dict[str, int] = {}
    for r in history:
        _add_counts(solved, r.get("solved_by_counts"))

    files = []
    if run_path is not None:
        files = [METRICS_NAME, SUMMARY_NAME, CHECKPOINT_NAME]
        files += [n for n in (CONFIG_NAME, PREVIOUS_NAME) if (run_path / n).exists()]
    return {
        "name": label,
        "status": status,
        "epochs": epochs,
        "epochs_completed": epochs_done,
        "steps": steps,
        "seed": seed,
        "schedule": plan.kind,
        "optimizer": optimizer_name,
        "backend": backend,
        "solved_by": "+".join(sorted(solved)) or None,
        "solved_by_counts": solved or None,
        "final": final,
        "best_val_accuracy": best["val_accuracy"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "evaluated_epoch": last_eval.get("epoch"),
        "majority_rate": data.majority_rate("test"),
        "majority_rate_val": data.majority_rate("val"),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_binary_parameters": sum(p.numel() for p in binary_parameters(model)),
        "solver_time": sum(float(r.get("solver_time") or 0.0) for r in history),
        "qpu_calls": qpu_totals.get("qpu_calls", 0),
        "qpu_access_time": qpu_totals.get("qpu_access_time", 0.0),
        "problems_per_call": (
            sum((r.get("problems_per_call") or 0.0) * (r.get("qpu_calls") or 0) for r in history)
            / calls_done
            if (calls_done := sum(int(r.get("qpu_calls") or 0) for r in history))
            else None
        ),
        "chain_break_fraction": (
            float(np.mean(cbfs))
            if (
                cbfs := [
                    r["chain_break_fraction"]
                    for r in history
                    if r.get("chain_break_fraction") is not None
                ]
            )
            else None
        ),
        "wall_time": elapsed,
        "wall_time_per_epoch": elapsed / epochs_done if epochs_done else None,
        "hyperparameters": (config or {}).get("train", {}).get("hyperparameters", {}),
        "run_dir": str(run_path) if run_path is not None else None,
        "files": files,
    }


# --------------------------------------------------------------------- config-driven runs
_RUN_FILES = (CONFIG_NAME, CHECKPOINT_NAME, PREVIOUS_NAME, METRICS_NAME, SUMMARY_NAME)


def run_files(run_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the run files present in ``run_dir`` (config, checkpoints, metrics, summary)."""
    return [n for n in _RUN_FILES if (Path(run_dir) / n).exists()]


def _check_writable(run_dir: Path) -> None:
    probe = run_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(
            f"output.run_dir {str(run_dir)!r} is not a directory ({str(probe)!r} is a file)"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"output.run_dir {str(run_dir)!r} is not writable (no write permission on {str(probe)!r})"
        )


#: What a run writes into its run directory; a fresh ``output.overwrite`` run replaces these.
_RUN_OUTPUTS = (
    *_RUN_FILES,
    "eval.json",
    "curves.png",
    "flip_ratio.png",
    "solver_time.png",
    "tensorboard",
)


def _file_id(path: Path) -> tuple[int, int, int] | None:
    """Identity of a file version (inode, mtime, size); None when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class _RunDirGuard:
    """Leaves a run directory as it was unless the run writes a checkpoint.

    A run directory is worth keeping once it holds a checkpoint of the run: before that there
    is nothing to resume, evaluate or compare, and a stub folder would make the corrected rerun
    refuse it (it "already holds a run") while ``--resume`` finds no checkpoint.

    :meth:`enter` creates the folder and its missing parents (remembering which). For a fresh
    run it moves the outputs of an old run (``output.overwrite``) into a hidden folder
    ``.bnn-saved-*`` inside it; for a resume it copies there the files the resumed run rewrites
    (``config.toml``, ``metrics.jsonl``). :meth:`exit` keeps the run when it ended without
    error or wrote a checkpoint since :meth:`enter` (and deletes the hidden folder); otherwise
    it deletes every entry that appeared in the run directory since :meth:`enter`, puts the
    saved files back and removes the folders it created, if empty. It deletes nothing it did
    not create.
    """

    def __init__(self, run_dir: Path, *, resume: bool) -> None:
        self.run_dir = run_dir
        self.resume = resume
        self.created: list[Path] = []
        self.saved: Path | None = None
        self.before: set[str] | None = None  # entries at enter
        self.checkpoint: tuple[int, int, int] | None = None

    def enter(self) -> None:
        missing = []
        probe = self.run_dir
        while not probe.exists() and probe.parent != probe:
            missing.append(probe)
            probe = probe.parent
        try:
            for folder in reversed(missing):
                try:
                    folder.mkdir()
                except FileExistsError:  # made by someone else meanwhile: not ours
                    continue
                self.created.append(folder)
            self.checkpoint = _file_id(self.run_dir / CHECKPOINT_NAME)
            names = (CONFIG_NAME, METRICS_NAME) if self.resume else _RUN_OUTPUTS
            present = [n for n in names if (self.run_dir / n).exists()]
            if present:
                self.saved = Path(tempfile.mkdtemp(prefix=".bnn-saved-", dir=self.run_dir))
                for n in present:
                    if self.resume:
                        shutil.copy2(self.run_dir / n, self.saved / n)
                    else:
                        os.replace(self.run_dir / n, self.saved / n)
            self.before = set(os.listdir(self.run_dir))
        except OSError as exc:
            self._undo()
            raise ConfigError(
                f"cannot prepare output.run_dir {str(self.run_dir)!r}: {exc}"
            ) from None

    def exit(self, ok: bool) -> bool:
        """Keep the run (True) if it ended well or wrote a checkpoint, else undo it (False)."""
        now = _file_id(self.run_dir / CHECKPOINT_NAME)
        if ok or (now is not None and now != self.checkpoint):
            if self.saved is not None:
                shutil.rmtree(self.saved, ignore_errors=True)
            return True
        self._undo()
        return False

    def _undo(self) -> None:
        if self.before is not None and self.run_dir.is_dir():
            for name in set(os.listdir(self.run_dir)) - self.before:
                path = self.run_dir / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        if self.saved is not None and self.saved.is_dir():
            for name in os.listdir(self.saved):
                os.replace(self.saved / name, self.run_dir / name)
            self.saved.rmdir()
        for folder in reversed(self.created):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break


def train_from_config(
    cfg: RunConfig,
    *,
    resume: bool = False,
    quiet: bool = False,
    callbacks: Sequence[Callback] = (),
    handle_signals: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the training described by ``cfg`` in ``cfg.output.run_dir``.

    Everything that can fail on bad input (run directory, checkpoint, config compatibility,
    dataset, model, optimizer, backend) is checked before any file is written. A fresh run
    goes into a new or empty directory (or, with ``output.overwrite``, replaces only a run's
    own files there). A run that fails before it writes its first checkpoint (e.g. a backend
    that fails at the first solve) leaves the directory as it found it: the folders and files
    it created are removed, replaced or rewritten files are put back.

    Args:
        cfg: A validated config.
        resume: Continue the run in ``cfg.output.run_dir`` from its checkpoint. Only
            ``train.epochs`` (not below the epochs done), ``train.eval_interval``,
            ``train.num_threads``, ``train.hyperparameters``, ``output.*``, ``name`` and
            ``description`` may differ
            from the checkpoint's config.
        quiet: No progress bars or log lines (also when ``CI=true`` or stderr is not a TTY).
        callbacks: Passed to :func:`fit`.
        handle_signals: Passed to :func:`fit`.

    Returns:
        The run summary (see :func:`fit`).

    Raises:
        ConfigError: the run directory is not empty (fresh start without
            ``output.overwrite``), is not writable, or holds no checkpoint to resume, or the
            config changed incompatibly; bad dataset/model/optimizer options; unknown backend.
        CheckpointError: resume from a missing or corrupt checkpoint.
        FileNotFoundError: a dataset file is missing.
    """
    run_dir = Path(cfg.output.run_dir)
    state = None
    if resume:
        if not run_dir.is_dir():
            raise ConfigError(f"cannot resume: run directory {str(run_dir)!r} does not exist")
        if not (run_dir / CHECKPOINT_NAME).exists() and not (run_dir / PREVIOUS_NAME).exists():
            raise ConfigError(
                f"cannot resume {str(run_dir)!r}: it holds no {CHECKPOINT_NAME} (the run "
                "stopped before its first checkpoint, so there is nothing to resume); start it "
                f"again with: bnn train {run_dir / CONFIG_NAME} --set output.overwrite=true"
            )
        state = load_checkpoint(run_dir)
        saved = state.get("config")
        if saved is not None:
            old = RunConfig.from_dict(saved, source=f"stored in {run_dir / CHECKPOINT_NAME}")
            changed = [
                k
                for k in incompatible_changes(old, cfg)
                if not _resume_may_change(k, str(state.get("status")))
            ]
            if changed:
                raise ConfigError(
                    f"cannot resume {str(run_dir)!r}: the config changed incompatibly at "
                    f"{', '.join(changed)} (only train.epochs, train.eval_interval, "
                    "train.num_threads, train.hyperparameters, output.*, name, description and "
                    "the QPU caps may change; after a stop at the QPU cap also annealer.backend, "
                    "annealer.pack, annealer.options and annealer.fallback)"
                )
        if cfg.train.epochs < int(state["epoch"]):
            raise ConfigError(
                f"train.epochs must be >= the {state['epoch']} epochs already done in "
                f"{str(run_dir)!r} (got {cfg.train.epochs})"
            )
    elif run_dir.is_dir() and not cfg.output.overwrite:
        existing = run_files(run_dir)
        if CHECKPOINT_NAME in existing or PREVIOUS_NAME in existing:
            raise ConfigError(
                f"run directory {str(run_dir)!r} already holds a run ({', '.join(existing)}); "
                f"resume it with: bnn train --resume {run_dir}; or pick another --run-dir, "
                "or set output.overwrite=true"
            )
        if existing:
            raise ConfigError(
                f"run directory {str(run_dir)!r} holds a run that never wrote a checkpoint "
                f"({', '.join(existing)}): there is nothing to resume; pick another --run-dir, "
                "or set output.overwrite=true to replace it"
            )
        others = sorted(os.listdir(run_dir))
        if others:
            shown = ", ".join(others[:5]) + (f", ... ({len(others)} entries)" if others[5:] else "")
            raise ConfigError(
                f"output.run_dir {str(run_dir)!r} must be a new or empty directory (got one "
                f"holding {shown}); pick another --run-dir, or set output.overwrite=true (which "
                "replaces only a run's own files)"
            )
    _check_writable(run_dir)

    if cfg.train.num_threads is not None:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed)
    dataset = build_dataset(cfg)
    model = build_model(cfg, dataset)
    optimizer = build_optimizer(cfg, model)

    guard = _RunDirGuard(run_dir, resume=resume)
    guard.enter()
    try:
        cfg.save(run_dir / CONFIG_NAME)
        summary = _fit_config(
            cfg, model, optimizer, dataset, run_dir, state, quiet, callbacks, handle_signals
        )
    except BaseException:
        guard.exit(ok=False)  # keeps the run only if it wrote a checkpoint
        raise
    guard.exit(ok=True)
    return summary


#: Always changeable on resume: the QPU caps.
_QPU_CAP_KEYS = ("annealer.max_qpu_seconds", "annealer.max_qpu_calls")
#: Changeable on resume after a stop at the QPU cap: continue on another backend.
_QPU_SWITCH_KEYS = ("annealer.backend", "annealer.pack", "annealer.options", "annealer.fallback")


def _resume_may_change(key: str, status: str) -> bool:
    """Whether config key ``key`` may differ when resuming a checkpoint of ``status``."""
    keys = _QPU_CAP_KEYS + (_QPU_SWITCH_KEYS if status == QPU_CAP_STATUS else ())
    return any(key == k or key.startswith(k + ".") for k in keys)


def _fit_config(
    cfg: RunConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: Any,
    run_dir: Path,
    state: Mapping[str, Any] | None,
    quiet: bool,
    callbacks: Sequence[Callback],
    handle_signals: bool,
) -> dict[str, Any]:
    return fit(
        model,
        optimizer,
        dataset,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        schedule=cfg.train.schedule,
        greedy_epochs_per_layer=cfg.train.greedy_epochs_per_layer,
        eval_interval=cfg.train.eval_interval,
        max_batches_per_epoch=cfg.train.max_batches_per_epoch,
        run_dir=run_dir,
        progress=not resolve_quiet(quiet),
        log_steps=cfg.output.log_steps,
        plots=cfg.output.plots,
        tensorboard=cfg.output.tensorboard,
        callbacks=callbacks,
        resume=state,
        config=cfg,
        handle_signals=handle_signals,
        max_qpu_seconds=cfg.annealer.max_qpu_seconds,
        max_qpu_calls=cfg.annealer.max_qpu_calls,
    )


def _run_config(run_dir: Path, overrides: Iterable[str]) -> RunConfig:
    path = run_dir / CONFIG_NAME
    if not path.exists():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory: no {CONFIG_NAME} in it")
    return RunConfig.from_file(path, overrides, updates={"output.run_dir": str(run_dir)})


def resume_run(
    run_dir: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    *,
    quiet: bool = False,
    callbacks: Sequence[Callback] = (),
    handle_signals: bool = True,
) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its checkpoint (``bnn train --resume``).

    The config is the run's ``config.toml`` with ``overrides`` applied (e.g.
    ``train.epochs=20`` to train longer); see :func:`train_from_config` for what may change.
    """
    cfg = _run_config(Path(run_dir), overrides)
    return train_from_config(
        cfg, resume=True, quiet=quiet, callbacks=callbacks, handle_signals=handle_signals
    )


def evaluate_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Reload a run's checkpoint and evaluate it on the validation and test data.

    Writes ``RUN_DIR/eval.json`` and returns the same dict: ``epoch``, ``step``,
    ``val_loss``, ``val_accuracy``, ``test_loss``, ``test_accuracy``, ``majority_rate``.

    Raises:
        ConfigError: not a run directory. CheckpointError: missing or corrupt checkpoint.
    """
    from bnn.checkpoint import atomic_write_bytes

    run_dir = Path(run_dir)
    cfg = _run_config(run_dir, ())
    state = load_checkpoint(run_dir)
    if cfg.train.num_threads is not None:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed)
    dataset = build_dataset(cfg)
    model = build_model(cfg, dataset)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint in {str(run_dir)!r} does not match its config's model: "
            f"{' '.join(str(exc).split())[:300]}"
        ) from None
    data = _Data(dataset)
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "epoch": int(state["epoch"]),
        "step": int(state["step"]),
    }
    result.update(_evaluation(model, data, F.cross_entropy))
    result["majority_rate"] = data.majority_rate("test")
    import json

    atomic_write_bytes(
        run_dir / "eval.json", (json.dumps(jsonable(result), indent=2) + "\n").encode()
    )
    return result
