"""The training loop as an iterator: :class:`Trainer` yields one record per step and per epoch.

A :class:`Trainer` owns the loop state (position, step count, history, the epoch's running
sums) and nothing else: writing ``metrics.jsonl``, the progress bar, checkpoints and plots are
callbacks (:mod:`bnn.callbacks`) that read the records it yields. :func:`bnn.training.fit`
wires the two together. The records, in order::

    {"kind": "epoch_start", "epoch", "batches", "first_batch", "active_layers", "announce"}
    {"kind": "step", "epoch", "step", "batch", "loss", "accuracy", "flip_ratio", ...}   per step
    {"kind": "epoch", "epoch", "step", "train_loss", "val_accuracy", ...}            per epoch
    {"kind": "checkpoint", "epoch", "batch", "status"}   a point to save (:meth:`Trainer.state_dict`)

A ``checkpoint`` record comes after every epoch, and mid-epoch when the run stops there (a
signal, see ``stop`` in :meth:`Trainer.run`; a QPU cap). Its ``epoch``/``batch`` are where a
resumed run continues. Layer schedules and the freezing of inactive layers are explained in
:mod:`bnn.training`.

Example:
    >>> from bnn.baselines import make_optimizer
    >>> from bnn.data import get_dataset
    >>> from bnn.models import BinaryMLP
    >>> ds = get_dataset("digits")
    >>> model = BinaryMLP(ds.num_features, [8], ds.num_classes)
    >>> trainer = Trainer(model, make_optimizer("signsgd", model), ds, epochs=1,
    ...                   batch_size=256, max_batches_per_epoch=2)
    >>> [r["kind"] for r in trainer.run()]
    ['epoch_start', 'step', 'step', 'epoch', 'checkpoint']
    >>> trainer.status, trainer.state.step
    ('completed', 2)
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bnn.baselines import latent_forward
from bnn.build import seed_everything
from bnn.checkpoint import CheckpointError, capture_rng_state, restore_rng_state
from bnn.config import SCHEDULES
from bnn.evaluation import _Data, evaluation
from bnn.records import jsonable
from bnn.train_stats import (
    QPU_CAP_STATUS,
    _annealer_stats,
    _qpu_cap_hit,
    _qpu_step,
    _sign_snapshot,
    _solved_by,
    accumulate_step,
    epoch_record,
    new_accum,
)
from qsgd.binary_optim import flip_ratio

__all__ = ["Trainer", "TrainState"]


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


# --------------------------------------------------------------------- one step
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


# --------------------------------------------------------------------- the loop
def _check_int(label: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{label} must be an int >= {low} (got {value!r})")


@dataclass
class TrainState:
    """Where a run stands: what a checkpoint stores besides the model and optimizer.

    Attributes:
        epoch: The 0-based epoch to continue at.
        batch: The batch of that epoch to continue at.
        step: Optimizer steps done.
        history: The epoch records so far.
        accum: The running sums of the current epoch (:func:`bnn.train_stats.new_accum`).
        elapsed: Wall-clock seconds spent so far.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    accum: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0


class _NoStop:
    signum: int | None = None


class Trainer:
    """Train ``model`` with ``optimizer`` on ``dataset``, one record at a time (:meth:`run`).

    Args:
        model: A model from :mod:`bnn.models` (or any module mapping inputs to logits).
        optimizer: A torch optimizer, e.g. :class:`qsgd.optimizer.QPSBGD` or a baseline.
        dataset: A ``bnn.data.TabularDataset`` or ``GraphDataset``.
        epochs: Total number of epochs (a resumed run continues up to it).
        batch_size: Mini-batch size (tabular data).
        seed: Seeds the global RNGs at construction and the data order of every epoch.
        schedule: ``"all"``, ``"round_robin"`` or ``"greedy"``.
        greedy_epochs_per_layer: Epochs per binary layer in the greedy schedule.
        eval_interval: Evaluate on validation and test every this many epochs (and the last).
        max_batches_per_epoch: Cap on mini-batches per epoch; None: all.
        loss_fn: ``loss_fn(logits, labels)``; default cross-entropy.
        max_qpu_seconds, max_qpu_calls: Caps on the optimizer's QPU use over the run.

    Attributes:
        state: The :class:`TrainState`.
        status: ``"completed"``, ``"interrupted"`` or ``"qpu_cap_reached"`` (after :meth:`run`).
        stop_reason: Why a QPU cap stopped the run, else None.

    Raises:
        ValueError: bad arguments (the message names them).
    """

    def __init__(
        self,
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
        loss_fn: Callable[..., torch.Tensor] | None = None,
        max_qpu_seconds: float | None = None,
        max_qpu_calls: int | None = None,
    ) -> None:
        for label, value, low in (
            ("epochs", epochs, 1),
            ("batch_size", batch_size, 1),
            ("eval_interval", eval_interval, 1),
            ("seed", seed, 0),
        ):
            _check_int(label, value, low)
        if max_batches_per_epoch is not None and (
            isinstance(max_batches_per_epoch, bool)
            or not isinstance(max_batches_per_epoch, int)
            or max_batches_per_epoch < 1
        ):
            raise ValueError(
                "max_batches_per_epoch must be a positive int or None "
                f"(got {max_batches_per_epoch!r})"
            )
        from bnn.layers import binary_layers

        self.model, self.optimizer = model, optimizer
        self.layers = {n or "<model>": layer for n, layer in binary_layers(model)}
        self.plan = _Schedule(schedule, list(self.layers), greedy_epochs_per_layer)
        self.data = _Data(dataset)
        self.loss_fn = loss_fn or F.cross_entropy
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.eval_interval, self.max_batches = eval_interval, max_batches_per_epoch
        self.max_qpu_seconds, self.max_qpu_calls = max_qpu_seconds, max_qpu_calls
        self.state = TrainState(accum=new_accum(list(self.layers)))
        self.resumed = False
        self.status = "completed"
        self.stop_reason: str | None = None
        self.stop: Any = _NoStop()
        seed_everything(seed)

    # ---- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, RNG states and the :class:`TrainState` (what a checkpoint stores)."""
        s = self.state
        return {
            "epoch": s.epoch,
            "batch": s.batch,
            "step": s.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": capture_rng_state(),
            "history": jsonable(s.history),
            "accum": jsonable(s.accum),
            "elapsed": s.elapsed,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint (:func:`bnn.checkpoint.load_checkpoint`).

        Raises:
            CheckpointError: it does not match the model or the optimizer.
            ValueError: ``epochs`` is below the epochs it has done.
        """
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:300]
            raise CheckpointError(
                f"checkpoint does not match this model/optimizer: {detail}"
            ) from None
        restore_rng_state(state["rng"])
        self.state = TrainState(
            epoch=int(state["epoch"]),
            batch=int(state["batch"]),
            step=int(state["step"]),
            history=[dict(r) for r in state["history"]],
            accum=dict(state["accum"]),
            elapsed=float(state.get("elapsed", 0.0)),
        )
        self.resumed = True
        if self.epochs < self.state.epoch:
            raise ValueError(
                f"epochs must be >= the {self.state.epoch} epochs already done when resuming "
                f"(got {self.epochs})"
            )

    def _save_point(self, epoch: int, batch: int, status: str) -> dict[str, Any]:
        self.state.epoch, self.state.batch = epoch, batch
        return {"kind": "checkpoint", "epoch": epoch, "batch": batch, "status": status}

    # ---- the loop
    def run(self, stop: Any = None) -> Iterator[dict[str, Any]]:
        """Train up to ``epochs``, yielding the records listed in the module docstring.

        Args:
            stop: An object whose ``signum`` attribute turns non-None to request a stop at the
                next step boundary (e.g. a SIGINT handler); the run then yields a
                ``checkpoint`` record and ends with ``status = "interrupted"``.

        Torch's CPU thread count decides how its float reductions are split, so it is held at
        the count :meth:`run` started with (a native thread pool started inside a step, such as
        numba's OpenMP layer, may not change it): a resumed run then repeats the records of an
        uninterrupted one.
        """
        stop = self.stop = stop if stop is not None else _NoStop()
        s = self.state
        t_run = time.perf_counter() - s.elapsed
        self.model.train()
        threads = torch.get_num_threads()
        start_epoch, start_batch = s.epoch, s.batch
        for epoch in range(start_epoch, self.epochs):
            batches = self.data.batches(self.seed, epoch, self.batch_size, self.max_batches)
            first = start_batch if epoch == start_epoch else 0
            if first == 0:
                s.accum = new_accum(list(self.layers))
            epoch_active = self.plan.active(epoch, s.step)
            yield {
                "kind": "epoch_start",
                "epoch": epoch + 1,
                "batches": len(batches),
                "first_batch": first,
                "active_layers": epoch_active,
                "announce": self.plan.kind == "greedy"
                and (epoch % self.plan.k == 0 or epoch == start_epoch),
            }
            for b in range(first, len(batches)):
                cap = _qpu_cap_hit(self.optimizer, self.max_qpu_seconds, self.max_qpu_calls)
                if cap is not None:
                    self.status, self.stop_reason = QPU_CAP_STATUS, cap
                    s.elapsed = time.perf_counter() - t_run
                    yield self._save_point(epoch, b, self.status)
                    break
                yield self._step(epoch, b, batches[b], threads)
                if stop.signum is not None:
                    self.status = "interrupted"
                    s.elapsed = time.perf_counter() - t_run
                    if b + 1 < len(batches):
                        yield self._save_point(epoch, b + 1, self.status)
                    break
            if self.status == QPU_CAP_STATUS:
                break  # the checkpoint above holds the progress
            if self.status == "interrupted" and s.accum["steps"] < len(batches):
                break  # mid-epoch: the checkpoint above holds the epoch's progress
            yield self._end_epoch(epoch, epoch_active)
            s.elapsed = time.perf_counter() - t_run
            last = epoch + 1 == self.epochs
            if self.status == "interrupted" and last:
                self.status = "completed"  # the signal came with the very last step
            kept = self.status if self.status == "interrupted" or last else "running"
            yield self._save_point(epoch + 1, 0, kept)
            if self.status == "interrupted":
                break
        s.elapsed = time.perf_counter() - t_run

    def _step(self, epoch: int, b: int, index: Any, threads: int) -> dict[str, Any]:
        """One optimizer step on batch ``b`` of ``epoch``; returns its ``step`` record."""
        s = self.state
        t0 = time.perf_counter()
        active = self.plan.active(epoch, s.step)
        inactive = [n for n in self.layers if n not in active]
        before = _sign_snapshot(self.layers)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        holder = _train_step(
            self.model, self.optimizer, self.data, index, self.loss_fn, self.layers, inactive
        )
        after = _sign_snapshot(self.layers)
        flips = {n: flip_ratio(before[n], after[n]) for n in active}
        energy, solver = _annealer_stats(self.optimizer)
        solved_by = _solved_by(self.optimizer)
        qpu = _qpu_step(self.optimizer)
        loss_value = float(holder["loss"])
        n_rows = int(holder["y"].numel())
        correct = int((holder["out"].argmax(dim=1) == holder["y"]).sum())
        s.step += 1
        dt = time.perf_counter() - t0
        accumulate_step(
            s.accum,
            loss=loss_value,
            rows=n_rows,
            correct=correct,
            flips=flips,
            energy=energy,
            solver=solver,
            solved_by=solved_by,
            qpu=qpu,
            dt=dt,
        )
        return {
            "kind": "step",
            "epoch": epoch + 1,
            "step": s.step,
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

    def _end_epoch(self, epoch: int, active: list[str]) -> dict[str, Any]:
        """The ``epoch`` record (with the evaluation when due), appended to the history."""
        s = self.state
        record = epoch_record(
            epoch, s.step, s.accum, active, self.data.majority_rate("test"), list(self.layers)
        )
        if (epoch + 1) % self.eval_interval == 0 or epoch + 1 == self.epochs:
            record.update(evaluation(self.model, self.data, self.loss_fn))
        s.history.append(record)
        return record
