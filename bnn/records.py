"""What a run leaves behind: ``metrics.jsonl``, ``summary.json``, PNG plots, progress bars.

Files in a run directory:

* ``metrics.jsonl``: one JSON object per line, ``{"kind": "step", ...}`` after each optimizer
  step (when step logging is on) and ``{"kind": "epoch", ...}`` after each epoch.
* ``summary.json``: one object for the whole run (status, final and best metrics, majority
  rate, timings, files).
* ``curves.png`` (loss and accuracy per epoch), ``flip_ratio.png`` (per binary layer),
  ``solver_time.png`` (annealer wall time per step, when an annealer ran).

Keys whose value is a wall-clock time are listed in :data:`TIMING_KEYS`; everything else in
a record is a deterministic function of the config and seed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bnn.checkpoint import atomic_write_bytes
from qsgd.errors import ConfigError, DataError

__all__ = [
    "METRICS_NAME",
    "SUMMARY_NAME",
    "TIMING_KEYS",
    "MetricsLog",
    "ProgressBar",
    "TensorBoardLogger",
    "resolve_quiet",
    "jsonable",
    "read_metrics",
    "write_summary",
    "read_summary",
    "strip_timings",
    "plot_run",
    "compare_runs",
    "run_labels",
]

METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
#: Record keys holding wall-clock times (they differ between otherwise identical runs).
TIMING_KEYS = frozenset(
    {"time", "epoch_time", "solver_time", "wall_time", "wall_time_per_epoch", "started", "finished"}
)


def resolve_quiet(quiet: bool = False) -> bool:
    """True when output should be quiet: asked for, ``CI=true``, or stderr is not a terminal."""
    if quiet:
        return True
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return True
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return True


def jsonable(value: Any) -> Any:
    """Plain-JSON version of a record: numpy/torch scalars to numbers, NaN/inf to ``None``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class MetricsLog:
    """Appends JSON records to ``RUN_DIR/metrics.jsonl`` and counts them.

    Args:
        path: The ``metrics.jsonl`` path.
        keep: On resume, the number of records already covered by the checkpoint: the file is
            cut to its first ``keep`` lines (later lines came from steps that will be redone).
            ``None`` starts a fresh, empty file.
    """

    def __init__(self, path: str | os.PathLike[str], keep: int | None = None) -> None:
        self.path = Path(path)
        lines: list[str] = []
        if keep is not None and self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines()[:keep]
        if keep is not None and len(lines) < keep:
            warnings.warn(
                f"{self.path} holds {len(lines)} records, fewer than the {keep} the checkpoint "
                "covers; continuing with those",
                stacklevel=2,
            )
        atomic_write_bytes(self.path, "".join(line + "\n" for line in lines).encode())
        self.count = len(lines)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record and flush it, so ``tail -f`` and readers see whole lines as they
        come (``fsync`` waits for :meth:`sync`)."""
        self._handle.write(json.dumps(jsonable(record), separators=(",", ":")) + "\n")
        self._handle.flush()
        self.count += 1

    def sync(self) -> None:
        """Flush to disk (before a checkpoint records :attr:`count`)."""
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            self._handle.close()


def read_metrics(run_dir: str | os.PathLike[str], kind: str | None = None) -> list[dict[str, Any]]:
    """Records of ``RUN_DIR/metrics.jsonl`` (only those of ``kind`` if given)."""
    path = Path(run_dir) / METRICS_NAME
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line:
            records.append(_json_object(line, path, f"line {number}"))
    return [r for r in records if kind is None or r.get("kind") == kind]


def _json_object(text: str, path: Path, where: str = "") -> dict[str, Any]:
    """``text`` parsed as a JSON object; DataError naming the file (and line) otherwise."""
    at = f" {where}" if where else ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{str(path)!r}{at} is not valid JSON (got {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise DataError(f"{str(path)!r}{at} must hold a JSON object (got {type(value).__name__})")
    return value


def write_summary(run_dir: str | os.PathLike[str], summary: Mapping[str, Any]) -> Path:
    """Atomically write ``RUN_DIR/summary.json``."""
    text = json.dumps(jsonable(summary), indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(Path(run_dir) / SUMMARY_NAME, text.encode())


def read_summary(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``RUN_DIR/summary.json`` as a dict.

    Raises:
        FileNotFoundError: the run has no summary (never ran or still running).
    """
    path = Path(run_dir) / SUMMARY_NAME
    if not path.exists():
        raise FileNotFoundError(f"no {SUMMARY_NAME} in run directory {str(run_dir)!r}")
    return _json_object(path.read_text(encoding="utf-8"), path)


def strip_timings(record: Any) -> Any:
    """``record`` without the keys in :data:`TIMING_KEYS` (recursively), for exact comparisons."""
    if isinstance(record, Mapping):
        return {k: strip_timings(v) for k, v in record.items() if k not in TIMING_KEYS}
    if isinstance(record, list):
        return [strip_timings(v) for v in record]
    return record


# --------------------------------------------------------------------- live output
class ProgressBar:
    """A tqdm bar over one epoch's steps, or a no-op when ``disable``."""

    def __init__(self, total: int, desc: str, *, disable: bool, initial: int = 0) -> None:
        self._bar = None
        if not disable:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, desc=desc, initial=initial, leave=True, dynamic_ncols=True, unit="step"
            )

    def update(self, postfix: Mapping[str, Any]) -> None:
        if self._bar is not None:
            self._bar.set_postfix(
                {k: v for k, v in postfix.items() if v is not None}, refresh=False
            )
            self._bar.update(1)

    def set_postfix(self, postfix: Mapping[str, Any]) -> None:
        if self._bar is not None:
            self._bar.set_postfix({k: v for k, v in postfix.items() if v is not None})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class TensorBoardLogger:
    """Scalars to TensorBoard when ``torch.utils.tensorboard`` works; otherwise a no-op with a warning."""

    def __init__(self, log_dir: str | os.PathLike[str], enabled: bool) -> None:
        self._writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn(
                "output.tensorboard is on but tensorboard is not installed "
                "(pip install tensorboard); skipping TensorBoard logging",
                stacklevel=2,
            )
            return
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, record: Mapping[str, Any], step: int) -> None:
        if self._writer is None:
            return
        prefix = record.get("kind", "metrics")
        for key, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


# --------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[Any], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            xs.append(r.get("epoch", r.get("step")))
            ys.append(float(v))
    return xs, ys


def plot_run(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the PNG plots of a run from its ``metrics.jsonl``; returns the files written."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    epochs = [r for r in records if r.get("kind") == "epoch"]
    steps = [r for r in records if r.get("kind") == "step"]
    if not epochs:
        return []
    plt = _pyplot()
    written: list[Path] = []

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val", "test"):
        ax_loss.plot(*_series(epochs, f"{split}_loss"), marker="o", ms=3, label=split)
        ax_acc.plot(*_series(epochs, f"{split}_accuracy"), marker="o", ms=3, label=split)
    majority = epochs[-1].get("majority_rate")
    if isinstance(majority, int | float):
        ax_acc.axhline(majority, color="grey", ls="--", lw=1, label="majority rate")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    written.append(_save(fig, run_dir / "curves.png", plt))

    source = steps if steps else epochs
    layers = sorted({name for r in source for name in (r.get("flip_ratio") or {})})
    if layers:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name in layers:
            xs = [r["step"] for r in source if name in (r.get("flip_ratio") or {})]
            ys = [r["flip_ratio"][name] for r in source if name in (r.get("flip_ratio") or {})]
            ax.plot(xs, ys, lw=1, label=name)
        ax.set(xlabel="step", ylabel="fraction of weights flipped", title="flip ratio per layer")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        written.append(_save(fig, run_dir / "flip_ratio.png", plt))

    xs, ys = _series([{**r, "epoch": r["step"]} for r in steps], "solver_time")
    if ys and any(y > 0 for y in ys):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(xs, ys, lw=1)
        ax.set(xlabel="step", ylabel="seconds", title="annealer wall time per step")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        written.append(_save(fig, run_dir / "solver_time.png", plt))
    return written


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def run_labels(run_dirs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Row labels of :func:`compare_runs`: each run folder's name, or, when two names clash,
    each folder's path relative to the folders' common parent.

    Example:
        >>> run_labels(["runs/a/seed0", "runs/b/seed0", "runs/c"])
        ['a/seed0', 'b/seed0', 'c']
    """
    paths = [Path(os.path.abspath(d)) for d in run_dirs]
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    common = os.path.commonpath(paths)
    return [os.path.relpath(p, common) if p != Path(common) else p.name for p in paths]


def _check_out_dir(out_dir: Path) -> None:
    probe = out_dir
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(
            f"comparison folder {str(out_dir)!r} must be a directory "
            f"(got {str(probe)!r}, which is a file)"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"comparison folder {str(out_dir)!r} is not writable (no write permission on "
            f"{str(probe)!r})"
        )


def compare_runs(
    run_dirs: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """A markdown table and an overlay plot of several runs.

    Rows and plot lines are labelled by run folder (:func:`run_labels`), so two runs of the
    same config stay apart; the ``config`` column is the config's ``name``. Writes
    ``OUT/comparison.md`` and ``OUT/comparison.png``; nothing is written when an input is bad.

    Returns:
        ``{"table": markdown text, "files": [paths], "labels": [row labels]}``.

    Raises:
        FileNotFoundError: a run directory has no ``summary.json``.
        DataError: a ``summary.json`` or ``metrics.jsonl`` is not valid JSON.
        ConfigError: no run, a run directory given twice, or ``out_dir`` is (inside) a file.
    """
    run_dirs = [Path(d) for d in run_dirs]
    out_dir = Path(out_dir)
    if not run_dirs:
        raise ConfigError("run_dirs must name at least one run directory (got none)")
    seen: dict[Path, Path] = {}
    for d in run_dirs:
        key = d.resolve()
        if key in seen:
            raise ConfigError(
                f"run directory {str(d)!r} is given twice (got {str(seen[key])!r} and {str(d)!r})"
            )
        seen[key] = d
    _check_out_dir(out_dir)
    summaries = [read_summary(d) for d in run_dirs]
    metrics = [read_metrics(d, "epoch") for d in run_dirs]
    labels = run_labels(run_dirs)
    header = (
        "| run | config | optimizer | backend | schedule | epochs | test acc | test loss "
        "| best val acc | majority rate | s/epoch |"
    )
    rows = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for label, s in zip(labels, summaries, strict=True):
        final = s.get("final", {})
        rows.append(
            "| "
            + " | ".join(
                [
                    label,
                    _fmt(s.get("name")),
                    _fmt(s.get("optimizer")),
                    _fmt(s.get("backend")),
                    _fmt(s.get("schedule")),
                    _fmt(s.get("epochs_completed")),
                    _fmt(final.get("test_accuracy")),
                    _fmt(final.get("test_loss")),
                    _fmt(s.get("best_val_accuracy")),
                    _fmt(s.get("majority_rate")),
                    _fmt(s.get("wall_time_per_epoch"), 2),
                ]
            )
            + " |"
        )
    table = "\n".join(rows) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [atomic_write_bytes(out_dir / "comparison.md", table.encode())]

    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for label, epochs in zip(labels, metrics, strict=True):
        key = "test" if any("test_accuracy" in r for r in epochs) else "train"
        ax_loss.plot(*_series(epochs, f"{key}_loss"), marker="o", ms=3, label=label)
        ax_acc.plot(*_series(epochs, f"{key}_accuracy"), marker="o", ms=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="test loss", title="test loss")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    files.append(_save(fig, out_dir / "comparison.png", plt))
    return {"table": table, "files": files, "labels": labels}
