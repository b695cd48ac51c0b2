"""The shared harness of the paper's experiments (``examples/*.py``), under one fair protocol.

One experiment compares methods (QP-SBGD on one or more annealer backends, its curvature-0
ablation, BinaryConnect, signSGD, ProxQuant, Bop and a full-precision reference) on one task.
The protocol is the same for every method (:data:`PROTOCOL_VERSION`):

1. **Search** (:func:`search`): every method searches its binary step size and its non-binary
   learning rate alike. The non-binary parameters (batch norm, output scale) are trained by
   Adam; their learning rate is *tied to the step size* for every method (``other_lr = lr``
   for QP-SBGD, which is what the baselines' shared ``lr`` does), or searched as its own axis
   (``other_lr`` in a grid). QP-SBGD searches its curvature on top; Bop, which has no step
   size, searches ``threshold`` x ``gamma`` x its Adam ``lr`` (on the same values as the others'
   step sizes). Grids are given as axes; whenever the chosen value of an axis sits on the
   edge of its grid, the axis is extended in that direction (geometrically) and the new
   points are trained, up to ``max_extensions`` times; every extension, and an edge that
   remains, is recorded. Each setting is trained once with the search seed; it runs for
   ``search_fraction`` x the final epochs (the same fraction for every method).
2. **Model selection at the best-validation epoch**: every run (search and final) is evaluated
   after every epoch; its score is the best validation accuracy over its epochs (ties: lower
   validation loss), and the test accuracy reported is the one *at that epoch*. With a
   ``patience`` a run stops after that many epochs without a better validation score.
3. **Runs** (:func:`run_seeds`): the chosen setting is trained with every seed (model
   initialisation, data order and annealer seed) and scored on the test split.
4. **Report**: a JSON of raw per-seed results (:func:`write_results`), a markdown table of
   mean ± std with one column per method (:func:`markdown_table`), per-seed paired differences
   of every QP-SBGD column against every other method with a 95 % t-interval
   (:func:`paired_differences`) and curves (:func:`plot_curves`). Every accuracy is reported
   next to the majority-class rate. :func:`summary_index` gathers the experiment JSONs into
   ``results/summary.json``.

Torch and numba run with a fixed, recorded thread count (:func:`fix_threads`); with it a rerun
of a results command on the same machine reproduces the JSON's numbers exactly (timings aside).
Methods can run in parallel worker processes (``jobs``); that does not change any number.

Training uses :func:`bnn.training.fit` (mini-batches for tabular data, full batch for graphs).

Layout: :mod:`bnn.experiments.methods` (methods, tasks, grids, threads),
:mod:`bnn.experiments.runs` (one run, the search, the seeded runs),
:mod:`bnn.experiments.harness` (:func:`run_experiment`, parallel workers, environment),
:mod:`bnn.experiments.report` (statistics, tables, curves, results files, ``summary.json``) and
:mod:`bnn.experiments.cli` (the scripts' shared argparse options). Everything public is
re-exported here.

Example:
    >>> from bnn.data import get_dataset
    >>> from bnn.models import BinaryMLP
    >>> task = Task("digits", get_dataset("digits"),
    ...             lambda ds, binary: BinaryMLP(ds.num_features, [16], ds.num_classes, binary=binary),
    ...             epochs=1, batch_size=64)
    >>> m = Method("signsgd", "signSGD", "signsgd", axes={"lr": [0.003, 0.01, 0.03]})
    >>> res = run_method(task, m, seeds=[0], search_seed=100)
    >>> sorted(res)[:3], len(res["runs"])
    (['axes', 'binary', 'budget'], 1)
"""

from __future__ import annotations

# names with a leading underscore are private; some tests reach them through the package
from bnn.experiments.cli import (
    _ResumeDirAction,  # noqa: F401
    add_common_arguments,
    annealer_settings,
    check_outputs,
    command_line,
    parse_experiment_args,
    run_and_write,
    shorten_backend,
    shorten_neal,
    usage_error,
    usage_errors,
)
from bnn.experiments.harness import environment, run_experiment
from bnn.experiments.methods import (
    BOUNDS,  # noqa: F401
    METHOD_LABELS,
    METHOD_ORDER,
    PROTOCOL_VERSION,
    Method,
    Task,
    build_methods,
    fair_grids,
    fix_threads,
    make_grid,
    shrink_tabular,
)
from bnn.experiments.report import (
    markdown_table,
    mean_std,
    numbers_only,
    paired_differences,
    plot_curves,
    result_files,
    save_figure,
    summarize,
    summary_index,
    summary_markdown,
    t_interval,
    write_json,
    write_results,
)
from bnn.experiments.runs import (  # noqa: F401
    _extend,
    _make_optimizer,
    _score,
    run_method,
    run_seeds,
    search,
    train_once,
)

__all__ = [
    "fair_grids",
    "METHOD_ORDER",
    "METHOD_LABELS",
    "PROTOCOL_VERSION",
    "Method",
    "Task",
    "make_grid",
    "build_methods",
    "fix_threads",
    "train_once",
    "search",
    "run_seeds",
    "run_method",
    "summarize",
    "mean_std",
    "paired_differences",
    "t_interval",
    "markdown_table",
    "plot_curves",
    "write_results",
    "write_json",
    "result_files",
    "save_figure",
    "numbers_only",
    "summary_index",
    "summary_markdown",
    "add_common_arguments",
    "annealer_settings",
    "parse_experiment_args",
    "shorten_neal",
    "shorten_backend",
    "usage_error",
    "usage_errors",
    "check_outputs",
    "run_and_write",
    "command_line",
    "environment",
    "run_experiment",
    "shrink_tabular",
]
