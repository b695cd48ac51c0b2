"""Run an :class:`~qkernels.config.ExperimentConfig` over data sets x ansätze x seeds.

For each run: build the kernel, evaluate the untrained kernel (alignment, SVM accuracies),
train it by alignment, evaluate again. Writes into ``out_dir``:

* ``results.json``: config, one record per run (seed, alignment before/after, accuracies,
  geometric difference to RBF, effective dimension, timings) and the per-group summary;
* ``results.md``: a markdown table across seeds per (data set, ansatz);
* ``plots/``: Gram heatmaps before/after, alignment curve, decision boundary (2-D data).

The output folder must be new or empty; a folder that already holds files is refused unless
``overwrite=True`` (then the earlier ``results.json``, ``results.md`` and ``plots/*.png`` are
replaced and other files are left alone). It is checked before any work starts.

Example:
    >>> summary = run_experiment(ExperimentConfig.from_file("cfg.toml"), "runs/kernels/cfg")
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.svm import SVC

from qkernels.alignment import centered_alignment, target_alignment
from qkernels.ansatz import get_ansatz
from qkernels.config import AnsatzConfig, DatasetConfig, ExperimentConfig
from qkernels.datasets import Dataset, load_dataset
from qkernels.evaluate import accuracy, effective_dimension, geometric_difference, rbf_kernel
from qkernels.kernel import EmbeddingKernel
from qkernels.training import train_alignment
from qsgd.errors import ConfigError

__all__ = [
    "run_one",
    "run_experiment",
    "summarize",
    "markdown_table",
    "prepare_output_dir",
    "check_datasets",
]

#: Files :func:`run_experiment` writes (``plots/`` holds PNGs); replaced with ``overwrite=True``.
OUTPUT_FILES = ("results.json", "results.md")


def check_datasets(cfg: ExperimentConfig) -> None:
    """Load every (data set, seed) of ``cfg`` once before any run (milliseconds each).

    Raises:
        ProblemError: a data set holds NaN or inf; the message names the data set, the split
            and the rows, so a bad set stops the experiment before anything is written.
    """
    for dcfg in cfg.datasets:
        for seed in cfg.seeds:
            load_dataset(
                dcfg.name,
                n_train=dcfg.n_train,
                n_test=dcfg.n_test,
                n_features=dcfg.n_features,
                seed=seed,
                noise=dcfg.noise,
            )


def prepare_output_dir(out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Check an output folder before any work and create it.

    A missing or empty folder is fine. A folder that holds anything is refused unless
    ``overwrite`` is true, and a path that is an existing file is always refused, so that
    nothing written earlier (another run, the committed ``results/`` tree) is replaced by
    accident.

    Args:
        out_dir: The output folder.
        overwrite: Allow a folder that already holds files.

    Returns:
        The folder, created with its parents.

    Raises:
        ConfigError: ``out_dir`` is a file, is not empty (without ``overwrite``), or cannot be
            created (the message gives the reason).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"output folder {str(out)!r} is an existing file, not a folder; pick another --out "
            "(got a file)"
        )
    if out.is_dir() and not overwrite:
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as exc:
            raise ConfigError(f"cannot read output folder {str(out)!r}: {exc}") from None
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise ConfigError(
                f"output folder {str(out)!r} is not empty ({shown}); pick another --out, or "
                "pass --overwrite to replace the results in it"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {str(out)!r}: {exc}") from None
    return out


def _svm_scores(K_train: np.ndarray, K_test: np.ndarray, ds: Dataset, C: float) -> dict[str, float]:
    svc = SVC(kernel="precomputed", C=C).fit(K_train, ds.y_train)
    return {
        "train": accuracy(ds.y_train, svc.predict(K_train)),
        "test": accuracy(ds.y_test, svc.predict(K_test)),
    }


def _evaluate(
    kern: EmbeddingKernel, ds: Dataset, C: float, scheduler: str = "local"
) -> tuple[dict[str, Any], np.ndarray]:
    t0 = time.perf_counter()
    if scheduler == "local":
        with torch.no_grad():
            K = kern.gram(ds.X_train)
            K_test = kern.gram(ds.X_test, ds.X_train)
    else:  # Gram tiles on Dask workers (same values as the local Gram)
        from qkernels.distributed import distributed_gram

        K = torch.from_numpy(distributed_gram(kern, ds.X_train, scheduler=scheduler))
        K_test = torch.from_numpy(
            distributed_gram(kern, ds.X_test, ds.X_train, scheduler=scheduler)
        )
    seconds = time.perf_counter() - t0
    Kn, Ktn = K.numpy(), K_test.numpy()
    rec = {
        "alignment": float(target_alignment(K, ds.y_train)),
        "centered_alignment": float(centered_alignment(K, ds.y_train)),
        "accuracy": _svm_scores(Kn, Ktn, ds, C),
        "effective_dimension": effective_dimension(Kn),
        "geometric_difference_rbf": geometric_difference(Kn, rbf_kernel(ds.X_train), reg=1e-3),
        "gram_seconds": seconds,
    }
    return rec, Kn


def run_one(
    cfg: ExperimentConfig,
    dcfg: DatasetConfig,
    acfg: AnsatzConfig,
    seed: int,
    plot_dir: Path | None = None,
) -> dict[str, Any]:
    """One run: returns its record (and writes plots into ``plot_dir`` when given)."""
    ds = load_dataset(
        dcfg.name,
        n_train=dcfg.n_train,
        n_test=dcfg.n_test,
        n_features=dcfg.n_features,
        seed=seed,
        noise=dcfg.noise,
    )
    n_wires = acfg.n_wires or ds.n_features
    ansatz = get_ansatz(acfg.name, n_wires, acfg.n_layers, n_features=ds.n_features)
    kern = EmbeddingKernel(
        ansatz,
        bandwidth=cfg.kernel.bandwidth,
        trainable_bandwidth=cfg.kernel.trainable_bandwidth,
        device=cfg.kernel.device,
        seed=seed,
        memory_budget_bytes=cfg.kernel.memory_budget_bytes,
    )
    before, K_before = _evaluate(kern, ds, cfg.model.C, cfg.kernel.scheduler)
    trainable = ansatz.trainable or cfg.kernel.trainable_bandwidth
    t0 = time.perf_counter()
    training = None
    if trainable and cfg.training.steps > 0:
        training = train_alignment(
            kern,
            ds.X_train,
            ds.y_train,
            steps=cfg.training.steps,
            batch_size=cfg.training.batch_size,
            lr=cfg.training.lr,
            centered=cfg.training.centered,
            optimizer=cfg.training.optimizer,
            seed=seed,
            eval_every=cfg.training.eval_every,
        )
    train_seconds = time.perf_counter() - t0
    after, K_after = (
        _evaluate(kern, ds, cfg.model.C, cfg.kernel.scheduler) if training else (before, K_before)
    )
    record = {
        "dataset": dcfg.name,
        "ansatz": acfg.name,
        "n_wires": n_wires,
        "n_layers": acfg.n_layers,
        "seed": seed,
        "trained": training is not None,
        "before": before,
        "after": after,
        "bandwidth": float(kern.bandwidth.detach()),
        "train_seconds": train_seconds,
        "step_seconds_mean": float(np.mean(training.step_seconds)) if training else None,
        "alignment_curve": training.alignment if training else [],
    }
    if plot_dir is not None:
        from qkernels import plots

        stem = f"{dcfg.name}_{acfg.name}_seed{seed}"
        plots.gram_heatmaps(K_before, K_after, ds.y_train, plot_dir / f"{stem}_gram.png")
        if training:
            plots.alignment_curve(training.alignment, plot_dir / f"{stem}_alignment.png")
        if ds.n_features == 2:
            plots.decision_boundary(kern, ds, cfg.model.C, plot_dir / f"{stem}_boundary.png")
    return record


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std())}


def _acc(rs: list[dict[str, Any]], phase: str, key: str) -> dict[str, float]:
    return _stats([r[phase]["accuracy"][key] for r in rs])


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation across seeds per (data set, ansatz)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["ansatz"]), []).append(r)
    out = []
    for (dataset, ansatz), rs in groups.items():
        delta = [r["after"]["accuracy"]["test"] - r["before"]["accuracy"]["test"] for r in rs]
        out.append(
            {
                "dataset": dataset,
                "ansatz": ansatz,
                "n_seeds": len(rs),
                "trained": rs[0]["trained"],
                "test_before": _acc(rs, "before", "test"),
                "test_after": _acc(rs, "after", "test"),
                "train_before": _acc(rs, "before", "train"),
                "train_after": _acc(rs, "after", "train"),
                "test_gain": _stats(delta),
                "alignment_before": _stats([r["before"]["alignment"] for r in rs]),
                "alignment_after": _stats([r["after"]["alignment"] for r in rs]),
                "geometric_difference_after": _stats(
                    [r["after"]["geometric_difference_rbf"] for r in rs]
                ),
                "train_seconds": _stats([r["train_seconds"] for r in rs]),
            }
        )
    return out


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """Markdown table of a summary (mean ± std across seeds; accuracies in percent)."""

    def pm(s: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
        return f"{s['mean'] * scale:.{digits}f} ± {s['std'] * scale:.{digits}f}"

    head = (
        "| dataset | ansatz | seeds | test acc untrained (%) | test acc trained (%) | gain (points) "
        "| train acc trained (%) | alignment before | alignment after | g(RBF‖Q) after | train s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {s['dataset']} | {s['ansatz']}{'' if s['trained'] else ' (fixed)'} | {s['n_seeds']} "
        f"| {pm(s['test_before'])} | {pm(s['test_after'])} | {pm(s['test_gain'])} "
        f"| {pm(s['train_after'])} | {pm(s['alignment_before'], 1, 3)} "
        f"| {pm(s['alignment_after'], 1, 3)} | {pm(s['geometric_difference_after'], 1, 2)} "
        f"| {s['train_seconds']['mean']:.1f} |"
        for s in summary
    ]
    return head + "\n".join(rows) + "\n"


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    smoke: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the whole grid and write ``results.json``, ``results.md`` and ``plots/``.

    Args:
        cfg: validated config.
        out_dir: output folder (created); must be new or empty unless ``overwrite``.
        smoke: run ``cfg.smoke_version()`` (reduced sizes for CI).
        progress: print one line per run.
        overwrite: allow an output folder that already holds files; the earlier
            ``results.json``, ``results.md`` and ``plots/*.png`` are removed first.

    Returns:
        The dictionary written to ``results.json``.

    Raises:
        ConfigError: the output folder is a file, not empty (without ``overwrite``) or cannot
            be created; checked before any run starts.
        ProblemError: a data set holds NaN or inf (see :func:`check_datasets`).
    """
    if smoke:
        cfg = cfg.smoke_version()
    check_datasets(cfg)
    out = prepare_output_dir(out_dir, overwrite=overwrite)
    plot_dir = out / "plots"
    if overwrite:
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
        if plot_dir.is_dir():
            for png in plot_dir.glob("*.png"):
                png.unlink()
    if cfg.plots:
        try:
            plot_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create plot folder {str(plot_dir)!r}: {exc}") from None
    runs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    try:
        for dcfg in cfg.datasets:
            for acfg in cfg.ansatze:
                for i, seed in enumerate(cfg.seeds):
                    want_plot = cfg.plots and (cfg.plot_seeds == "all" or i == 0)
                    rec = run_one(cfg, dcfg, acfg, seed, plot_dir if want_plot else None)
                    runs.append(rec)
                    if progress:
                        print(
                            f"{dcfg.name:>13} {acfg.name:>18} seed {seed}: test acc "
                            f"{rec['before']['accuracy']['test']:.3f} -> {rec['after']['accuracy']['test']:.3f}, "
                            f"alignment {rec['before']['alignment']:.3f} -> {rec['after']['alignment']:.3f} "
                            f"({rec['train_seconds']:.1f} s)",
                            flush=True,
                        )
    finally:
        torch.set_num_threads(threads)
    summary = summarize(runs)
    result = {
        "config": cfg.model_dump(),
        "smoke": smoke,
        "runs": runs,
        "summary": summary,
        "total_seconds": time.perf_counter() - t0,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pennylane": __import__("pennylane").__version__,
        },
    }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "results.md").write_text(f"# {cfg.name}\n\n" + markdown_table(summary))
    return result
