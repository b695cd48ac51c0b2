"""Running from a config: train, resume and evaluate a run directory (what ``bnn train`` and
``bnn eval`` call).

:func:`train_from_config` checks everything that can fail on bad input before any file is
written (run directory, checkpoint, config compatibility, then :mod:`bnn.build`), keeps the run
directory as it found it when a run fails before its first checkpoint (:class:`_RunDirGuard`)
and runs :func:`bnn.training.fit` there; :func:`resume_run` continues from the checkpoint with
the run's own ``config.toml``; :func:`evaluate_run` reloads the checkpoint and writes
``eval.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bnn.build import build_dataset, build_model, build_optimizer, seed_everything
from bnn.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME, CheckpointError, load_checkpoint
from bnn.config import RunConfig, incompatible_changes
from bnn.evaluation import _Data, evaluation
from bnn.records import METRICS_NAME, SUMMARY_NAME, jsonable, resolve_quiet
from bnn.train_stats import CONFIG_NAME, QPU_CAP_STATUS
from qsgd.errors import ConfigError

__all__ = ["run_files", "train_from_config", "resume_run", "evaluate_run"]


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


def _check_resume(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """The checkpoint to resume ``run_dir`` from, once it is known to fit ``cfg``."""
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
    return state


def _check_fresh(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse a fresh run into a directory that holds a run or other files (unless
    ``output.overwrite``)."""
    if not run_dir.is_dir() or cfg.output.overwrite:
        return
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


def train_from_config(
    cfg: RunConfig,
    *,
    resume: bool = False,
    quiet: bool = False,
    callbacks: Sequence[Any] = (),
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
        state = _check_resume(cfg, run_dir)
    else:
        _check_fresh(cfg, run_dir)
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
    callbacks: Sequence[Any],
    handle_signals: bool,
) -> dict[str, Any]:
    from bnn.training import fit

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
    callbacks: Sequence[Any] = (),
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
    result.update(evaluation(model, data, F.cross_entropy))
    result["majority_rate"] = data.majority_rate("test")
    atomic_write_bytes(
        run_dir / "eval.json", (json.dumps(jsonable(result), indent=2) + "\n").encode()
    )
    return result
