"""Run an :class:`~qkernels.config.ExperimentConfig` over data sets x ansätze x seeds.

For each run (one data set, ansatz and seed, one train/test split) four kernels are scored on
the same split, each by an SVM with the same ``C``:

* ``untrained``: the circuit with its seeded random parameters at the configured bandwidth;
* ``untrained_tuned_bandwidth``: the same circuit at the bandwidth chosen by stratified
  cross-validation on the training split, with a budget of simulated states equal to the
  training's (see :class:`~qkernels.config.BaselinesConfig`);
* ``trained``: the circuit after alignment training;
* ``rbf_tuned``: a Gaussian kernel whose ``gamma`` is chosen by cross-validation on the same folds.

Each kernel's record holds the SVM's train/test accuracy and the evaluators of
:mod:`qkernels.evaluate` on the training Gram: alignment, centred alignment, polarity,
task-model alignment, model complexity ``s_K`` and Huang et al.'s bound, effective dimension
and the geometric difference to the tuned RBF kernel. Writes into ``out_dir``:

* ``results.json``: config, one record per run (seed, alignment before/after, accuracies,
  geometric difference to RBF, effective dimension, timings) and the per-group summary;
* ``results.md``: a markdown table across seeds per (data set, ansatz);
* ``plots/``: Gram heatmaps before/after, alignment curve, decision boundary (2-D data).

The output folder must be new or empty; a folder that already holds files is refused unless
``overwrite=True`` (then the earlier ``results.json``, ``results.md`` and ``plots/*.png`` are
replaced and other files are left alone). It is checked before any work starts.

Example:
    >>> import tempfile
    >>> cfg = ExperimentConfig.from_file("examples/configs/kernels_checkerboard.toml")
    >>> out = tempfile.mkdtemp()
    >>> summary = run_experiment(cfg, out, smoke=True, progress=False)
    >>> sorted(summary["runs"][0]["methods"])[:2]
    ['rbf_tuned', 'trained']
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.svm import SVC

from qkernels.alignment import centered_alignment, target_alignment
from qkernels.ansatz import get_ansatz
from qkernels.config import AnsatzConfig, BaselinesConfig, DatasetConfig, ExperimentConfig
from qkernels.datasets import Dataset, load_dataset
from qkernels.evaluate import (
    accuracy,
    effective_dimension,
    generalization_bound,
    geometric_difference,
    model_complexity,
    polarity,
    rbf_kernel,
    task_model_alignment,
)
from qkernels.kernel import EmbeddingKernel
from qkernels.summary import (  # noqa: F401  (re-exported: qkernels.experiment.*)
    EVALUATORS,
    METHOD_TITLES,
    METHODS,
    markdown_table,
    summarize,
)
from qkernels.training import train_alignment
from qsgd.errors import ConfigError

__all__ = [
    "METHODS",
    "bandwidth_candidates",
    "grid_search",
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
            _load(dcfg, seed)


def _load(dcfg: DatasetConfig, seed: int) -> Dataset:
    """The (data set, seed) split of a config entry."""
    return load_dataset(
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


def _grams(
    kern: EmbeddingKernel, ds: Dataset, scheduler: str = "local", dask: Any = None
) -> tuple[np.ndarray, np.ndarray, float]:
    t0 = time.perf_counter()
    if scheduler == "local" and getattr(dask, "scheduler_file", None) is None:
        with torch.no_grad():
            K = kern.gram(ds.X_train)
            K_test = kern.gram(ds.X_test, ds.X_train)
    else:  # Gram tiles on Dask workers (same values as the local Gram)
        from qkernels.distributed import distributed_gram

        K = torch.from_numpy(distributed_gram(kern, ds.X_train, scheduler=scheduler, dask=dask))
        K_test = torch.from_numpy(
            distributed_gram(kern, ds.X_test, ds.X_train, scheduler=scheduler, dask=dask)
        )
    return K.numpy(), K_test.numpy(), time.perf_counter() - t0


def _scores(
    K: np.ndarray,
    K_test: np.ndarray,
    ds: Dataset,
    C: float,
    reg: float,
    K_rbf: np.ndarray | None,
) -> dict[str, Any]:
    """SVM accuracies and the evaluators of one training Gram (labels in ``{-1, +1}``)."""
    Kt = torch.from_numpy(K)
    y = ds.y_train
    n = K.shape[0]
    rec: dict[str, Any] = {
        "alignment": float(target_alignment(Kt, y)),
        "centered_alignment": float(centered_alignment(Kt, y)),
        "polarity": polarity(K, y, rescale_classes=True),
        "task_model_alignment": task_model_alignment(K, y),
        "model_complexity_per_n": model_complexity(K, y, reg) / n,
        "generalization_bound": generalization_bound(K, y, reg),
        "accuracy": _svm_scores(K, K_test, ds, C),
        "effective_dimension": effective_dimension(K),
    }
    if K_rbf is None:
        K_rbf = rbf_kernel(ds.X_train)
    rec["geometric_difference_rbf"] = geometric_difference(K, K_rbf, reg=reg)
    return rec


def _folds(ds: Dataset, bcfg: BaselinesConfig, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds of the training split shared by both searches."""
    _, counts = np.unique(ds.y_train, return_counts=True)
    k = int(min(bcfg.cv_folds, counts.min()))
    if k < 2:
        raise ConfigError(
            f"baselines.cv_folds: a class of the training split has {counts.min()} point(s), "
            "too few for 2 cross-validation folds; raise n_train (got 1 fold)"
        )
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(ds.X_train, ds.y_train))


def bandwidth_candidates(cfg: ExperimentConfig, n_train: int) -> np.ndarray:
    """The log-spaced bandwidth grid of the tuned-bandwidth baseline (see ``BaselinesConfig``)."""
    b = cfg.baselines
    n = b.bandwidth_candidates
    if n is None:
        n = max(4, round(cfg.training.steps * cfg.training.batch_size / n_train))
    return np.geomspace(b.bandwidth_min, b.bandwidth_max, int(n))


def grid_search(
    evaluate: Any, grid: np.ndarray, max_extensions: int = 2
) -> tuple[float, dict[str, Any]]:
    """Maximise ``evaluate(value)`` (a tuple, compared in order) over a log-spaced grid.

    When the best value sits on an end of the grid, the grid is extended beyond that end by
    ``max(2, len(grid) // 2)`` points of the same ratio, up to ``max_extensions`` times, so that
    a chosen value on the edge says the range was searched as far as allowed. Ties go to the
    smaller value.

    Returns:
        The best value and a record: ``grid`` and ``scores`` (every value tried, ascending),
        ``on_edge`` (still on an end after the extensions), ``extensions``, ``candidates``.
    """
    results: dict[float, tuple[float, ...]] = {}
    todo = [float(v) for v in grid]
    extensions = 0
    while True:
        for v in todo:
            if v not in results:
                results[v] = tuple(evaluate(v))
        ordered = sorted(results)
        best = max(ordered, key=lambda v: (*results[v], -v))
        i = ordered.index(best)
        on_edge = len(ordered) > 1 and i in (0, len(ordered) - 1)
        if not on_edge or extensions == max_extensions:
            break
        ratio = ordered[1] / ordered[0]
        k = max(2, len(grid) // 2)
        sign = -1 if i == 0 else 1
        edge_value = ordered[0] if i == 0 else ordered[-1]
        todo = [edge_value * ratio ** (sign * j) for j in range(1, k + 1)]
        extensions += 1
    info = {
        "grid": ordered,
        "scores": [list(results[v]) for v in ordered],
        "on_edge": on_edge,
        "extensions": extensions,
        "candidates": len(ordered),
    }
    return best, info


def _search_bandwidth(
    kern: EmbeddingKernel,
    ds: Dataset,
    C: float,
    grid: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """Cross-validated SVM accuracy of the kernel at each bandwidth; the kernel is left as found.

    The best mean fold accuracy wins; ties go to the higher alignment, then the smaller bandwidth.
    """
    start = kern.bandwidth.detach().clone()

    def evaluate(bw: float) -> tuple[float, float]:
        with torch.no_grad():
            kern.bandwidth.fill_(bw)
            K = kern.gram(ds.X_train)
        svc = SVC(kernel="precomputed", C=C)
        cv = float(cross_val_score(svc, K.numpy(), ds.y_train, cv=folds).mean())
        return cv, float(target_alignment(K, ds.y_train))

    try:
        best, info = grid_search(evaluate, grid)
    finally:
        with torch.no_grad():
            kern.bandwidth.copy_(start)
    return {"bandwidth": best, "cv_accuracy": info["scores"][info["grid"].index(best)][0], **info}


def _tuned_rbf(
    ds: Dataset, C: float, n: int, folds: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """RBF SVM with ``gamma`` chosen by cross-validation; returns its record and Grams.

    The grid is ``n`` log-spaced multiples (1e-2 to 1e2) of ``1 / (d · Var X)``, extended when
    the best sits on an end (:func:`grid_search`); ties go to the smaller (smoother) ``gamma``.
    """
    var = float(ds.X_train.var())
    gamma0 = 1.0 / (ds.X_train.shape[1] * var) if var > 0 else 1.0

    def evaluate(gamma: float) -> tuple[float]:
        svc = SVC(kernel="rbf", gamma=gamma, C=C)
        return (float(cross_val_score(svc, ds.X_train, ds.y_train, cv=folds).mean()),)

    gamma, info = grid_search(evaluate, gamma0 * np.logspace(-2, 2, n))
    record = {"gamma": gamma, "cv_accuracy": info["scores"][info["grid"].index(gamma)][0], **info}
    return (
        record,
        rbf_kernel(ds.X_train, gamma=gamma),
        rbf_kernel(ds.X_test, ds.X_train, gamma=gamma),
    )


def run_one(
    cfg: ExperimentConfig,
    dcfg: DatasetConfig,
    acfg: AnsatzConfig,
    seed: int,
    plot_dir: Path | None = None,
) -> dict[str, Any]:
    """One run: the four kernels of :data:`METHODS` on one split; plots into ``plot_dir``.

    The record keeps ``before`` (untrained) and ``after`` (trained) and adds ``methods``, one
    record per kernel (``before``/``after`` are the same objects as two of them).
    """
    ds = _load(dcfg, seed)
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
    bcfg, C = cfg.baselines, cfg.model.C
    folds = _folds(ds, bcfg, seed)
    K_rbf = K_rbf_test = None
    rbf_info: dict[str, Any] | None = None
    if bcfg.rbf:
        rbf_info, K_rbf, K_rbf_test = _tuned_rbf(ds, C, bcfg.rbf_candidates, folds)
    K_before, K_before_test, gram_s = _grams(kern, ds, cfg.kernel.scheduler, cfg.kernel.dask)
    before = {**_scores(K_before, K_before_test, ds, C, bcfg.reg, K_rbf), "gram_seconds": gram_s}
    methods: dict[str, dict[str, Any]] = {"untrained": before}
    if bcfg.bandwidth_search:
        methods["untrained_tuned_bandwidth"] = _tuned_bandwidth(kern, ds, cfg, folds, K_rbf)
    trainable = ansatz.trainable or cfg.kernel.trainable_bandwidth
    t0 = time.perf_counter()
    training = _train(kern, ds, cfg, seed) if trainable and cfg.training.steps > 0 else None
    train_seconds = time.perf_counter() - t0
    if training:
        K_after, K_after_test, gram_s = _grams(kern, ds, cfg.kernel.scheduler, cfg.kernel.dask)
        after = {**_scores(K_after, K_after_test, ds, C, bcfg.reg, K_rbf), "gram_seconds": gram_s}
    else:
        after, K_after = before, K_before
    methods["trained"] = after
    if rbf_info is not None:
        methods["rbf_tuned"] = {**_scores(K_rbf, K_rbf_test, ds, C, bcfg.reg, K_rbf), **rbf_info}
    record = {
        "dataset": dcfg.name,
        "ansatz": acfg.name,
        "n_wires": n_wires,
        "n_layers": acfg.n_layers,
        "seed": seed,
        "trained": training is not None,
        "before": before,
        "after": after,
        "methods": methods,
        "bandwidth": float(kern.bandwidth.detach()),
        "train_seconds": train_seconds,
        "step_seconds_mean": float(np.mean(training.step_seconds)) if training else None,
        "alignment_curve": training.alignment if training else [],
        "full_alignment_curve": training.full_alignment if training else [],
    }
    if plot_dir is not None:
        stem = plot_dir / f"{dcfg.name}_{acfg.name}_seed{seed}"
        _plot_run(kern, ds, C, K_before, K_after, training, stem)
    return record


def _tuned_bandwidth(
    kern: EmbeddingKernel,
    ds: Dataset,
    cfg: ExperimentConfig,
    folds: list[tuple[np.ndarray, np.ndarray]],
    K_rbf: np.ndarray | None,
) -> dict[str, Any]:
    """The ``untrained_tuned_bandwidth`` record: the untrained circuit at the bandwidth chosen
    by cross-validation (the kernel's bandwidth is restored afterwards)."""
    bcfg, C = cfg.baselines, cfg.model.C
    t0 = time.perf_counter()
    search = _search_bandwidth(kern, ds, C, bandwidth_candidates(cfg, len(ds.y_train)), folds)
    with torch.no_grad():
        kern.bandwidth.fill_(search["bandwidth"])
    K_bw, K_bw_test, _ = _grams(kern, ds, cfg.kernel.scheduler, cfg.kernel.dask)
    with torch.no_grad():
        kern.bandwidth.fill_(cfg.kernel.bandwidth)
    return {
        **_scores(K_bw, K_bw_test, ds, C, bcfg.reg, K_rbf),
        **search,
        "search_seconds": time.perf_counter() - t0,
    }


def _train(kern: EmbeddingKernel, ds: Dataset, cfg: ExperimentConfig, seed: int) -> Any:
    """Alignment training of ``kern`` on the training split with ``cfg.training``."""
    return train_alignment(
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


def _plot_run(
    kern: EmbeddingKernel,
    ds: Dataset,
    C: float,
    K_before: np.ndarray,
    K_after: np.ndarray,
    training: Any,
    stem: Path,
) -> None:
    """A run's plots: Gram heatmaps, the alignment curve (when trained) and the decision
    boundary (2-D data), as ``{stem}_gram.png`` etc."""
    from qkernels import plots

    plots.gram_heatmaps(K_before, K_after, ds.y_train, Path(f"{stem}_gram.png"))
    if training:
        plots.alignment_curve(
            training.alignment, Path(f"{stem}_alignment.png"), training.full_alignment
        )
    if ds.n_features == 2:
        plots.decision_boundary(kern, ds, C, Path(f"{stem}_boundary.png"))


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
                        accs = ", ".join(
                            f"{m} {v['accuracy']['test']:.3f}" for m, v in rec["methods"].items()
                        )
                        print(
                            f"{dcfg.name:>13} {acfg.name:>18} seed {seed}: test acc {accs}; "
                            f"alignment {rec['before']['alignment']:.3f} -> "
                            f"{rec['after']['alignment']:.3f} ({rec['train_seconds']:.1f} s)",
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
