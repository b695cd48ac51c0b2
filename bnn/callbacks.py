"""What the fit loop does with the records of a :class:`bnn.trainer.Trainer`: one callback each.

A callback has four hooks, all optional: ``on_start(trainer)``, ``on_record(trainer, record)``
for every record the trainer yields (``epoch_start``, ``step``, ``epoch``, ``checkpoint``),
``on_end(trainer, summary)`` once the run has stopped and ``close()`` (always, even after an
error). :func:`bnn.training.fit` builds this list:

* :class:`MetricsFile`: ``metrics.jsonl`` (step records when ``log_steps``, every epoch record);
* :class:`TensorBoard`: the numeric fields as TensorBoard scalars;
* :class:`FunctionCallback`: a plain ``callback(kind, record)`` for ``step``/``epoch`` records;
* :class:`Progress`: the log lines and the tqdm bar of each epoch;
* :class:`Checkpointer`: ``checkpoint.pt`` at every ``checkpoint`` record;
* :class:`Plots`: the PNG plots of a completed run, named in the summary's ``files``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bnn.checkpoint import save_checkpoint
from bnn.records import METRICS_NAME, MetricsLog, ProgressBar, TensorBoardLogger, plot_run
from bnn.train_stats import QPU_CAP_STATUS

__all__ = [
    "Callback",
    "MetricsFile",
    "TensorBoard",
    "FunctionCallback",
    "Progress",
    "Checkpointer",
    "Plots",
]


class Callback:
    """Base class: every hook does nothing."""

    def on_start(self, trainer: Any) -> None:
        """Before the first record."""

    def on_record(self, trainer: Any, record: Mapping[str, Any]) -> None:
        """After the trainer yields ``record``."""

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        """After the run stopped; may add to ``summary`` before it is written."""

    def close(self) -> None:
        """Release files (called even when the run failed)."""


class MetricsFile(Callback):
    """Append step (when ``log_steps``) and epoch records to ``RUN_DIR/metrics.jsonl``.

    Args:
        run_dir: The run directory.
        keep: Records to keep from an existing file (a resumed run: the checkpoint's count).
        log_steps: Write step records too, not only epoch records.
    """

    def __init__(self, run_dir: Path, *, keep: int | None, log_steps: bool) -> None:
        self.log = MetricsLog(run_dir / METRICS_NAME, keep=keep)
        self.log_steps = log_steps

    def on_record(self, trainer: Any, record: Mapping[str, Any]) -> None:
        if record["kind"] == "epoch" or (record["kind"] == "step" and self.log_steps):
            self.log.write(record)

    def close(self) -> None:
        self.log.close()


class TensorBoard(Callback):
    """Step and epoch records as scalars in ``log_dir`` (a no-op unless ``enabled``)."""

    def __init__(self, log_dir: Path, *, enabled: bool) -> None:
        self.logger = TensorBoardLogger(log_dir, enabled)

    def on_record(self, trainer: Any, record: Mapping[str, Any]) -> None:
        if record["kind"] in ("step", "epoch"):
            self.logger.log(record, record["step"])

    def close(self) -> None:
        self.logger.close()


class FunctionCallback(Callback):
    """Call ``fn(kind, record)`` for every ``step`` and ``epoch`` record (the plain form)."""

    def __init__(self, fn: Callable[[str, Mapping[str, Any]], None]) -> None:
        self.fn = fn

    def on_record(self, trainer: Any, record: Mapping[str, Any]) -> None:
        if record["kind"] in ("step", "epoch"):
            self.fn(record["kind"], record)


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


class Progress(Callback):
    """Log lines on stderr (through tqdm) and one tqdm bar per epoch; silent when ``quiet``.

    Args:
        quiet: No output at all.
        label: The run's name, in the first line.
        optimizer_name: Shown in the first line (with the optimizer's ``backend_name``).
        run_dir: Named in the resume hint after a stop.
    """

    def __init__(self, *, quiet: bool, label: str, optimizer_name: str, run_dir: Any) -> None:
        self.quiet, self.label, self.optimizer_name = quiet, label, optimizer_name
        self.run_dir = run_dir
        self.bar: ProgressBar | None = None

    def log(self, message: str) -> None:
        if not self.quiet:
            from tqdm.auto import tqdm

            tqdm.write(message, file=sys.stderr)

    def on_start(self, trainer: Any) -> None:
        backend = getattr(trainer.optimizer, "backend_name", None)
        s = trainer.state
        self.log(
            f"training {self.label!r}: {self.optimizer_name}"
            + (f" on backend {backend!r}" if backend else "")
            + f", {trainer.epochs} epoch(s), seed {trainer.seed}; {trainer.plan.describe()}"
            + (f"; resuming at epoch {s.epoch + 1}, step {s.step}" if trainer.resumed else "")
        )

    def on_record(self, trainer: Any, record: Mapping[str, Any]) -> None:
        kind = record["kind"]
        if kind == "epoch_start":
            if record["announce"]:
                layers = ", ".join(record["active_layers"])
                self.log(f"epoch {record['epoch']}: greedy schedule trains {layers}")
            self.bar = ProgressBar(
                record["batches"],
                f"epoch {record['epoch']}/{trainer.epochs}",
                disable=self.quiet,
                initial=record["first_batch"],
            )
        elif kind == "step" and self.bar is not None:
            energy, solver = record["best_energy"], record["solver_time"]
            self.bar.update(
                {
                    "loss": f"{record['loss']:.4f}",
                    "acc": f"{record['accuracy']:.3f}",
                    "E": None if energy is None else f"{energy:.3g}",
                    "t_solve": None if solver is None else f"{solver:.2f}s",
                }
            )
        elif kind == "epoch":
            self._close_bar()
            self.log(_epoch_line(record, trainer.epochs))

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        self._close_bar()
        if trainer.status == "interrupted":
            self.log(
                f"interrupted by signal {trainer.stop.signum}: checkpoint saved; "
                f"resume with bnn train --resume {self.run_dir}"
            )
        if trainer.status == QPU_CAP_STATUS:
            self.log(
                f"stopped: {trainer.stop_reason}; checkpoint saved; resume with bnn train "
                f"--resume {self.run_dir} --set annealer.max_qpu_seconds=<more> (or "
                "max_qpu_calls), or on another backend with --set annealer.backend=neal "
                "--set annealer.pack=false"
            )

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self._close_bar()


class Checkpointer(Callback):
    """Save ``RUN_DIR/checkpoint.pt`` at every ``checkpoint`` record (atomically, keeping the
    previous one; :func:`bnn.checkpoint.save_checkpoint`).

    The checkpoint holds :meth:`bnn.trainer.Trainer.state_dict`, the record's ``status``, the
    number of lines of ``metrics.jsonl`` written so far (flushed to disk first, so a resumed run
    cuts the file back to it) and the run's config.
    """

    def __init__(
        self, run_dir: Path, *, metrics: MetricsFile | None, config: dict[str, Any] | None
    ) -> None:
        self.run_dir, self.metrics, self.config = run_dir, metrics, config

    def on_record(self, trainer: Any, record: Mapping[str, Any]) -> None:
        if record["kind"] != "checkpoint":
            return
        if self.metrics is not None:
            self.metrics.log.sync()
        state = trainer.state_dict()
        state.update(
            status=record["status"],
            metrics_count=self.metrics.log.count if self.metrics is not None else 0,
            config=self.config,
        )
        save_checkpoint(self.run_dir, state)


class Plots(Callback):
    """PNG plots of ``metrics.jsonl`` at the end of a completed run (:func:`bnn.records.plot_run`)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        if trainer.status == "completed":
            summary["files"] += [p.name for p in plot_run(self.run_dir)]
