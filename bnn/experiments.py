"""The shared harness of the paper's experiments (``examples/*.py``).

One experiment compares methods (QP-SBGD on one or more annealer backends, BinaryConnect,
signSGD, ProxQuant and a full-precision reference) on one task with a fair protocol:

1. **Search** (:func:`search`): every method gets the same number of hyperparameter settings
   (its ``budget``: learning rates, and for QP-SBGD learning rate x curvature scale), each
   trained once with the search seed on the training split and scored on the validation
   split; the best validation accuracy (ties: lower validation loss) wins.
2. **Runs** (:func:`run_seeds`): the chosen setting is trained with every seed (model
   initialisation, data order and annealer seed) and scored on the test split.
3. **Report**: a JSON of raw per-seed results (:func:`write_results`), a markdown table of
   mean ± std with one column per method (:func:`markdown_table`) and curves
   (:func:`plot_curves`). Every accuracy is reported next to the majority-class rate.

Training uses :func:`bnn.training.fit` (mini-batches for tabular data, full batch for graphs).

Example:
    >>> from bnn.data import get_dataset
    >>> from bnn.models import BinaryMLP
    >>> task = Task("digits", get_dataset("digits"),
    ...             lambda ds, binary: BinaryMLP(ds.num_features, [16], ds.num_classes, binary=binary),
    ...             epochs=1, batch_size=64)
    >>> m = Method("signsgd", "signSGD", "signsgd", grid=[{"lr": 0.01}])
    >>> res = run_method(task, m, seeds=[0], search_seed=100)
    >>> sorted(res)[:3]
    ['chosen', 'key', 'label']
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
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
    "METHOD_ORDER",
    "METHOD_LABELS",
    "Method",
    "Task",
    "make_grid",
    "build_methods",
    "train_once",
    "search",
    "run_seeds",
    "run_method",
    "summarize",
    "mean_std",
    "markdown_table",
    "plot_curves",
    "write_results",
    "add_common_arguments",
    "annealer_settings",
    "command_line",
    "environment",
    "run_experiment",
    "shrink_tabular",
]

#: Column order of the tables: QP-SBGD backends first, then the baselines.
METHOD_ORDER: tuple[str, ...] = (
    "qpsbgd_mock-dwave",
    "qpsbgd_neal",
    "qpsbgd_batched",
    "qpsbgd_exact",
    "binaryconnect",
    "signsgd",
    "proxquant",
    "full_precision",
)

#: Display names of the methods.
METHOD_LABELS: dict[str, str] = {
    "binaryconnect": "BinaryConnect",
    "signsgd": "signSGD",
    "proxquant": "ProxQuant",
    "full_precision": "full precision",
}

_BASELINE_OPTIMIZER = {
    "binaryconnect": "binaryconnect",
    "signsgd": "signsgd",
    "proxquant": "proxquant",
    "full_precision": "adam",
}


def _label(key: str) -> str:
    if key.startswith("qpsbgd_"):
        return f"QP-SBGD ({key.removeprefix('qpsbgd_')})"
    return METHOD_LABELS.get(key, key)


@dataclass
class Method:
    """One column of an experiment.

    Attributes:
        key: Identifier (``"qpsbgd_neal"``, ``"binaryconnect"``, ...).
        label: Column title.
        optimizer: Name for :func:`bnn.baselines.make_optimizer`.
        grid: The hyperparameter settings the search tries (its length is the budget).
        binary: Whether the model is binary (False: the full-precision reference).
        fixed: Options passed to the optimizer in every setting (e.g. the annealer).
        seeds: Override of the experiment's seeds (a slow method run on fewer seeds).
        epochs: Override of the task's epochs.
        max_batches: Cap on mini-batches per epoch (None: all).
        search_from: Key of another method whose chosen setting this one reuses instead of
            searching (same algorithm on a slower backend); recorded in the results.
    """

    key: str
    label: str
    optimizer: str
    grid: list[dict[str, Any]]
    binary: bool = True
    fixed: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] | None = None
    epochs: int | None = None
    max_batches: int | None = None
    search_from: str | None = None


@dataclass
class Task:
    """A dataset, a model factory and the training protocol shared by all methods.

    Attributes:
        name: Identifier used in file names.
        dataset: A ``bnn.data.TabularDataset`` or ``GraphDataset`` with a validation split.
        model_fn: ``model_fn(dataset, binary)`` builds a fresh model (seed the RNG first).
        epochs: Epochs of every run.
        batch_size: Mini-batch size (tabular data; graphs train full-batch).
        search_epochs: Epochs of the search runs (None: ``epochs``).
        max_batches: Cap on mini-batches per epoch (None: all).
    """

    name: str
    dataset: Any
    model_fn: Callable[[Any, bool], nn.Module]
    epochs: int
    batch_size: int = 32
    search_epochs: int | None = None
    max_batches: int | None = None


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
    grids: Mapping[str, list[dict[str, Any]]],
    *,
    backends: Sequence[str],
    annealer: Mapping[str, Any] | None = None,
    qpsbgd_options: Mapping[str, Any] | None = None,
    include: Sequence[str] | None = None,
) -> list[Method]:
    """The methods of an experiment, in :data:`METHOD_ORDER`, with an equal search budget.

    Args:
        grids: Search grid per method family: ``"qpsbgd"`` (shared by every backend),
            ``"binaryconnect"``, ``"signsgd"``, ``"proxquant"``, ``"full_precision"``.
        backends: Annealer backends of the QP-SBGD columns (``"neal"``, ``"batched"``, ...).
        annealer: Settings shared by the backends (``num_reads``, ``num_sweeps``, ...); the
            generic knobs a backend lacks are dropped (see :class:`qsgd.config.AnnealerConfig`).
        qpsbgd_options: Fixed QPSBGD options (``formulation``, ``other_lr``, ...).
        include: Method keys to keep (None: all).

    Raises:
        ValueError: the grids do not all have the same length (unequal budget), a family
            is missing, or an unknown key in ``include``.
    """
    from qsgd.config import AnnealerConfig

    families = ["qpsbgd", *_BASELINE_OPTIMIZER]
    missing = [f for f in families if f not in grids]
    if missing:
        raise ValueError(f"grids is missing the method family {missing[0]!r}")
    sizes = {f: len(grids[f]) for f in families}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every method must get the same search budget (got grid sizes {sizes})")
    methods: list[Method] = []
    for name in backends:
        cfg = AnnealerConfig.from_dict({**dict(annealer or {}), "backend": name})
        fixed = {"backend": cfg, **dict(qpsbgd_options or {})}
        key = f"qpsbgd_{name}"
        methods.append(Method(key, _label(key), "qpsbgd", list(grids["qpsbgd"]), fixed=fixed))
    for key, opt in _BASELINE_OPTIMIZER.items():
        methods.append(
            Method(key, _label(key), opt, list(grids[key]), binary=key != "full_precision")
        )
    known = [m.key for m in methods]
    if include is not None:
        unknown = [k for k in include if k not in known]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; methods of this run: {known}")
        methods = [m for m in methods if m.key in include]
    order = {k: i for i, k in enumerate(METHOD_ORDER)}
    return sorted(methods, key=lambda m: order.get(m.key, len(order)))


def _optimizer_options(method: Method, hparams: Mapping[str, Any], seed: int) -> dict[str, Any]:
    options = {**method.fixed, **hparams}
    if method.optimizer == "qpsbgd":
        options["seed"] = seed
    return options


def train_once(
    task: Task,
    method: Method,
    hparams: Mapping[str, Any],
    seed: int,
    *,
    epochs: int | None = None,
    eval_interval: int | None = None,
) -> dict[str, Any]:
    """Train one model with one setting and seed; returns its record.

    Args:
        task: The task.
        method: The method (its ``fixed`` options plus ``hparams`` build the optimizer).
        hparams: The hyperparameters of this run.
        seed: Seeds the model initialisation, the data order and the annealer.
        epochs: Epochs (default: the method's, else the task's).
        eval_interval: Evaluate every this many epochs (default 1; the last epoch always).

    Returns:
        ``seed``, ``hparams``, ``val_accuracy``, ``val_loss``, ``test_accuracy``,
        ``test_loss``, ``train_loss``, ``epochs``, ``wall_time``, ``wall_time_per_epoch``,
        ``solver_time`` and ``curve`` (per evaluated epoch: ``epoch``, ``train_loss``,
        ``val_accuracy``, ``test_accuracy``, ``test_loss``).
    """
    from bnn.baselines import make_optimizer
    from bnn.training import fit, seed_everything

    epochs = epochs or method.epochs or task.epochs
    seed_everything(seed)
    model = task.model_fn(task.dataset, method.binary)
    optimizer = make_optimizer(method.optimizer, model, **_optimizer_options(method, hparams, seed))
    curve: list[dict[str, Any]] = []

    def collect(kind: str, record: Mapping[str, Any]) -> None:
        if kind == "epoch":
            curve.append(
                {
                    k: record.get(k)
                    for k in ("epoch", "train_loss", "val_accuracy", "test_accuracy", "test_loss")
                }
            )

    max_batches = method.max_batches if method.max_batches is not None else task.max_batches
    summary = fit(
        model,
        optimizer,
        task.dataset,
        epochs=epochs,
        batch_size=task.batch_size,
        seed=seed,
        eval_interval=eval_interval or 1,
        max_batches_per_epoch=max_batches,
        progress=False,
        plots=False,
        callbacks=[collect],
        handle_signals=False,
    )
    final = summary["final"]
    return {
        "seed": seed,
        "hparams": dict(hparams),
        "epochs": epochs,
        "max_batches_per_epoch": max_batches,
        "train_loss": final["train_loss"],
        "val_accuracy": final["val_accuracy"],
        "val_loss": final["val_loss"],
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        "wall_time": summary["wall_time"],
        "wall_time_per_epoch": summary["wall_time_per_epoch"],
        "solver_time": summary["solver_time"],
        "curve": [c for c in curve if c.get("test_accuracy") is not None or c.get("train_loss")],
    }


def _score(record: Mapping[str, Any]) -> tuple[float, float]:
    acc = record.get("val_accuracy")
    loss = record.get("val_loss")
    acc = -math.inf if acc is None or not math.isfinite(acc) else acc
    loss = math.inf if loss is None or not math.isfinite(loss) else loss
    return acc, -loss


def search(
    task: Task, method: Method, *, seed: int, epochs: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Try every setting of ``method.grid`` once; pick the best validation accuracy.

    Returns:
        ``(chosen_hparams, trials)`` where each trial is ``hparams``, ``val_accuracy``,
        ``val_loss``, ``wall_time``.

    Raises:
        ValueError: empty grid.
    """
    if not method.grid:
        raise ValueError(f"method {method.key!r} has an empty search grid")
    epochs = epochs or task.search_epochs or method.epochs or task.epochs
    trials = []
    for hp in method.grid:
        rec = train_once(task, method, hp, seed, epochs=epochs, eval_interval=epochs)
        trials.append(
            {
                "hparams": dict(hp),
                "val_accuracy": rec["val_accuracy"],
                "val_loss": rec["val_loss"],
                "wall_time": rec["wall_time"],
            }
        )
    best = max(trials, key=_score)
    return dict(best["hparams"]), trials


def run_seeds(
    task: Task, method: Method, hparams: Mapping[str, Any], seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """:func:`train_once` for each seed (evaluating every epoch, for the curves)."""
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
        (JSON-friendly), ``grid``, ``budget``, ``search`` (trials), ``search_from``,
        ``chosen``, ``seeds``, ``runs`` (per-seed records) and ``summary`` (:func:`summarize`).
    """
    trials: list[dict[str, Any]] = []
    if chosen is None:
        chosen, trials = search(task, method, seed=search_seed)
    seeds = list(method.seeds if method.seeds is not None else seeds)
    runs = run_seeds(task, method, chosen, seeds)
    return {
        "key": method.key,
        "label": method.label,
        "optimizer": method.optimizer,
        "binary": method.binary,
        "fixed": _jsonable(method.fixed),
        "grid": method.grid,
        "budget": len(method.grid),
        "search": trials,
        "search_from": method.search_from,
        "chosen": dict(chosen),
        "seeds": seeds,
        "epochs": method.epochs or task.epochs,
        "max_batches_per_epoch": method.max_batches
        if method.max_batches is not None
        else task.max_batches,
        "runs": runs,
        "summary": summarize(runs),
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
    """Mean and std over seeds of the test accuracy, test loss and wall time per epoch."""
    out: dict[str, Any] = {"n": len(runs)}
    for key in ("test_accuracy", "test_loss", "wall_time_per_epoch", "val_accuracy"):
        m, s = mean_std([r.get(key) for r in runs])
        out[key] = {"mean": m, "std": s}
    return out


def _fmt(stat: Mapping[str, Any] | None, digits: int) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _fmt_hp(hp: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


def markdown_table(results: Mapping[str, Any]) -> str:
    """The results as a markdown table: one column per method, mean ± std over seeds.

    Rows: test accuracy, test loss, wall time per epoch (s), the majority-class rate, seeds,
    epochs, the search budget and the chosen hyperparameters.
    """
    methods = list(results["methods"].values())
    head = "| | " + " | ".join(m["label"] for m in methods) + " |"
    sep = "|---|" + "---|" * len(methods)
    rows = [
        ("test accuracy", [_fmt(m["summary"]["test_accuracy"], 4) for m in methods]),
        ("test loss", [_fmt(m["summary"]["test_loss"], 4) for m in methods]),
        ("wall time / epoch (s)", [_fmt(m["summary"]["wall_time_per_epoch"], 2) for m in methods]),
        ("validation accuracy", [_fmt(m["summary"]["val_accuracy"], 4) for m in methods]),
        (
            "majority rate (test)",
            [f"{results.get('majority_rate', float('nan')):.4f}" for _ in methods],
        ),
        ("seeds", [str(len(m["seeds"])) for m in methods]),
        (
            "epochs (batches/epoch cap)",
            [
                f"{m['epochs']}"
                + (f" ({m['max_batches_per_epoch']})" if m.get("max_batches_per_epoch") else "")
                for m in methods
            ],
        ),
        (
            "search budget",
            [
                f"reused from {_label(m['search_from'])}"
                if m.get("search_from")
                else str(m["budget"])
                for m in methods
            ],
        ),
        ("chosen", [_fmt_hp(m["chosen"]) for m in methods]),
    ]
    lines = [f"### {results.get('title', results.get('task', ''))}", "", head, sep]
    lines += ["| " + name + " | " + " | ".join(cells) + " |" for name, cells in rows]
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


def run_experiment(
    task: Task,
    methods: Sequence[Method],
    *,
    seeds: Sequence[int],
    search_seed: int = 1000,
    title: str = "",
    extra: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every method (search, then seeds) and collect the results document.

    A method with ``search_from`` reuses the chosen setting of that method (which must come
    earlier or later in ``methods``; it is run first).

    Returns:
        ``task``, ``title``, ``majority_rate`` (test) and ``majority_rate_val``, ``protocol``
        (epochs, batch size, seeds, search seed and epochs, budget), ``methods`` (by key, see
        :func:`run_method`), ``environment``, ``wall_time`` and ``extra``.
    """
    from bnn.training import _Data

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    keys = [m.key for m in methods]
    for m in methods:
        if m.search_from is not None and m.search_from not in keys:
            raise ValueError(
                f"method {m.key!r} reuses the search of {m.search_from!r}, which is not run"
            )
    order = sorted(methods, key=lambda m: m.search_from is not None)
    done: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for m in order:
        chosen = done[m.search_from]["chosen"] if m.search_from else None
        log(f"[{task.name}] {m.label}: " + ("runs" if chosen else f"search ({len(m.grid)})"))
        done[m.key] = run_method(task, m, seeds=seeds, search_seed=search_seed, chosen=chosen)
        s = done[m.key]["summary"]
        log(
            f"[{task.name}] {m.label}: chosen {done[m.key]['chosen']}, test accuracy "
            f"{_fmt(s['test_accuracy'], 4)}, {_fmt(s['wall_time_per_epoch'], 2)} s/epoch"
        )
    data = _Data(task.dataset)
    results: dict[str, Any] = {
        "task": task.name,
        "title": title or task.name,
        "majority_rate": data.majority_rate("test"),
        "majority_rate_val": data.majority_rate("val"),
        "protocol": {
            "epochs": task.epochs,
            "batch_size": task.batch_size,
            "max_batches_per_epoch": task.max_batches,
            "seeds": list(seeds),
            "search_seed": search_seed,
            "search_epochs": task.search_epochs or task.epochs,
            "search_split": "validation",
            "selection": "best validation accuracy at the last search epoch (ties: lower loss)",
        },
        "methods": {k: done[k] for k in keys},
        "environment": environment(),
        "wall_time": time.perf_counter() - t0,
        "extra": dict(extra or {}),
    }
    results["table"] = markdown_table(results)
    return results


# --------------------------------------------------------------------- command line
def add_common_arguments(
    parser: argparse.ArgumentParser, *, default_backends: Sequence[str]
) -> argparse.ArgumentParser:
    """The options every experiment script shares.

    ``--seeds N`` (seeds 0..N-1), ``--smoke`` (tiny run for CI), ``--out DIR``,
    ``--backend NAME`` (repeatable; the QP-SBGD columns), ``--annealer-config FILE`` (TOML
    with an ``[annealer]`` table: its backend and run settings), ``--num-reads``,
    ``--num-sweeps``, ``--methods`` (comma-separated keys), ``--threads``.
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
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest here)")
    parser.set_defaults(_default_backends=list(default_backends))
    return parser


def annealer_settings(
    args: argparse.Namespace, defaults: Mapping[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """Backends and shared annealer settings from the parsed arguments.

    Precedence: ``--num-reads``/``--num-sweeps`` over the ``--annealer-config`` file over
    ``defaults``. The file's ``backend`` becomes the only QP-SBGD column unless ``--backend``
    is given.

    Raises:
        ConfigError: invalid annealer config file.
        ValueError: a non-positive ``--seeds``, ``--num-reads`` or ``--num-sweeps``.
    """
    from qsgd.config import AnnealerConfig

    if args.seeds < 1:
        raise ValueError(f"--seeds must be a positive int (got {args.seeds})")
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


def environment() -> dict[str, Any]:
    """Versions and machine facts stored with the results."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
