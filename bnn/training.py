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

Layout: :mod:`bnn.trainer` (the loop, one record per step and per epoch), :mod:`bnn.callbacks`
(metrics file, progress bar, checkpoints, plots), :mod:`bnn.build` (dataset, model and optimizer
from a config), :mod:`bnn.evaluation` (data views, evaluation), :mod:`bnn.train_stats` (step
and epoch statistics, the summary) and :mod:`bnn.runner` (train, resume and evaluate from a
config). This module keeps :func:`fit` and re-exports the public names of the others.

Run directories: a directory is kept only once it holds a checkpoint of the run. A fresh run
that fails before its first checkpoint (bad data, a backend that fails at the first solve, ...)
leaves no folder behind (:func:`train_from_config` removes what it created, and only that), so
the corrected command can run into the same ``--run-dir``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnn.build import build_dataset, build_model, build_optimizer, seed_everything
from bnn.callbacks import (
    Callback,
    Checkpointer,
    FunctionCallback,
    MetricsFile,
    Plots,
    Progress,
    TensorBoard,
)
from bnn.config import RunConfig
from bnn.evaluation import _Data, evaluate  # noqa: F401 - _Data: scripts and tests use it
from bnn.records import METRICS_NAME, SUMMARY_NAME, write_summary  # noqa: F401 - re-exported
from bnn.runner import evaluate_run, resume_run, run_files, train_from_config
from bnn.train_stats import CONFIG_NAME, QPU_CAP_STATUS, run_summary  # noqa: F401
from bnn.trainer import Trainer, _signal_guard, _train_step  # noqa: F401 - _train_step: tests

__all__ = [
    "CONFIG_NAME",
    "Callback",
    "Trainer",
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
    callbacks: Sequence[Callback | Callable[[str, Mapping[str, Any]], None]] = (),
    resume: Mapping[str, Any] | None = None,
    config: RunConfig | None = None,
    name: str | None = None,
    handle_signals: bool = True,
    max_qpu_seconds: float | None = None,
    max_qpu_calls: int | None = None,
) -> dict[str, Any]:
    """Train ``model`` with ``optimizer`` on ``dataset``; returns the run summary.

    A :class:`bnn.trainer.Trainer` runs the loop; the run directory's files, the progress bar
    and ``callbacks`` are :mod:`bnn.callbacks` fed with its records. The many keyword
    arguments are kept for compatibility (the scripts and :mod:`bnn.runner` pass them).

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
        callbacks: Plain functions, called as ``callback("step" | "epoch", record)``, or
            :class:`bnn.callbacks.Callback` objects (they see every record of the trainer).
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
    trainer = Trainer(
        model,
        optimizer,
        dataset,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        schedule=schedule,
        greedy_epochs_per_layer=greedy_epochs_per_layer,
        eval_interval=eval_interval,
        max_batches_per_epoch=max_batches_per_epoch,
        loss_fn=loss_fn,
        max_qpu_seconds=max_qpu_seconds,
        max_qpu_calls=max_qpu_calls,
    )
    run_path = Path(run_dir) if run_dir is not None else None
    if run_path is not None and not run_path.is_dir():
        raise ValueError(f"run_dir must be an existing directory (got {str(run_path)!r})")
    if resume is not None:
        trainer.load_state_dict(resume)
    label = name or (config.name if config is not None else "run")
    config_dict = config.to_dict() if config is not None else None
    optimizer_name = (
        config.optimizer.name if config is not None else type(optimizer).__name__.lower()
    )
    hooks = _callbacks(
        trainer,
        run_path,
        callbacks,
        resume,
        config_dict,
        label,
        optimizer_name,
        progress=progress,
        log_steps=log_steps,
        plots=plots,
        tensorboard=tensorboard,
    )
    try:
        for hook in hooks:
            hook.on_start(trainer)
        with _signal_guard(handle_signals) as stop:
            for record in trainer.run(stop):
                for hook in hooks:
                    hook.on_record(trainer, record)
    finally:
        for hook in hooks:
            hook.close()
    summary = _summary(trainer, label, optimizer_name, config_dict, run_path)
    for hook in hooks:
        hook.on_end(trainer, summary)
    if run_path is not None:
        write_summary(run_path, summary)
    return summary


def _summary(
    trainer: Trainer,
    label: str,
    optimizer_name: str,
    config: dict[str, Any] | None,
    run_path: Path | None,
) -> dict[str, Any]:
    """The summary of a finished :meth:`Trainer.run` (:func:`bnn.train_stats.run_summary`)."""
    s, optimizer = trainer.state, trainer.optimizer
    summary = run_summary(
        label=label,
        status=trainer.status,
        epochs=trainer.epochs,
        steps=s.step,
        seed=trainer.seed,
        schedule=trainer.plan.kind,
        optimizer_name=optimizer_name,
        backend=getattr(optimizer, "backend_name", None),
        history=s.history,
        majority_rates=(trainer.data.majority_rate("test"), trainer.data.majority_rate("val")),
        elapsed=s.elapsed,
        model=trainer.model,
        config=config,
        run_path=run_path,
        qpu_totals=getattr(optimizer, "qpu_totals", None),
    )
    summary["stop_reason"] = trainer.stop_reason
    return summary


def _callbacks(
    trainer: Trainer,
    run_path: Path | None,
    callbacks: Sequence[Any],
    resume: Mapping[str, Any] | None,
    config: dict[str, Any] | None,
    label: str,
    optimizer_name: str,
    *,
    progress: bool,
    log_steps: bool,
    plots: bool,
    tensorboard: bool,
) -> list[Callback]:
    """The callbacks of :func:`fit`, in the order they see each record."""
    hooks: list[Callback] = []
    metrics = None
    if run_path is not None:
        keep = int(resume["metrics_count"]) if resume is not None else None
        metrics = MetricsFile(run_path, keep=keep, log_steps=log_steps)
        hooks += [metrics, TensorBoard(run_path / "tensorboard", enabled=tensorboard)]
    hooks += [c if isinstance(c, Callback) else FunctionCallback(c) for c in callbacks]
    hooks.append(
        Progress(quiet=not progress, label=label, optimizer_name=optimizer_name, run_dir=run_path)
    )
    if run_path is not None:
        hooks.append(Checkpointer(run_path, metrics=metrics, config=config))
        if plots:
            hooks.append(Plots(run_path))
    return hooks
