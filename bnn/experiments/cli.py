"""Command-line helpers of the experiment scripts (``examples/*.py``): shared arguments.

:func:`add_common_arguments` adds the options every script shares, :func:`annealer_settings`
validates them and reads ``--annealer-config``, :func:`command_line` records the command.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


# --------------------------------------------------------------------- command line
def add_common_arguments(
    parser: argparse.ArgumentParser, *, default_backends: Sequence[str]
) -> argparse.ArgumentParser:
    """The options every experiment script shares.

    ``--seeds N`` (seeds 0..N-1), ``--smoke`` (tiny run for CI), ``--out DIR``,
    ``--backend NAME`` (repeatable; the QP-SBGD columns), ``--annealer-config FILE`` (TOML
    with an ``[annealer]`` table: its backend and run settings), ``--num-reads``,
    ``--num-sweeps``, ``--methods`` (comma-separated keys), ``--threads`` (torch and numba),
    ``--jobs`` (worker processes), ``--patience``, ``--search-fraction``, ``--max-extensions``,
    ``--resume-dir`` (the trial store, :mod:`bnn.trial_store`).
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
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and numba threads per process, fixed and recorded (numbers depend on it)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="methods run in this many worker processes"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping: epochs without a better validation score (default: the script's)",
    )
    parser.add_argument(
        "--search-fraction",
        type=float,
        default=None,
        help="search runs last this fraction of the final epochs, for every method",
    )
    parser.add_argument(
        "--max-extensions",
        type=int,
        default=3,
        help="rounds of grid extension when a chosen value sits on an edge",
    )
    parser.add_argument(
        "--resume-dir",
        default=None,
        action=_ResumeDirAction,
        help="keep every finished training run in this folder and reuse it when the same "
        "command runs again (resume after an interruption; bnn/trial_store.py)",
    )
    parser.set_defaults(_default_backends=list(default_backends))
    return parser


class _ResumeDirAction(argparse.Action):
    """``--resume-dir DIR``: make ``DIR`` this process's trial store (:mod:`bnn.trial_store`)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from bnn.trial_store import use_store

        try:
            use_store(values)
        except ValueError as exc:
            parser.error(f"{option_string}: {exc}")
        setattr(namespace, self.dest, values)


def annealer_settings(
    args: argparse.Namespace, defaults: Mapping[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """Backends and shared annealer settings from the parsed arguments.

    Precedence: ``--num-reads``/``--num-sweeps`` over the ``--annealer-config`` file over
    ``defaults``. The file's ``backend`` becomes the only QP-SBGD column unless ``--backend``
    is given.

    Raises:
        ConfigError: invalid annealer config file.
        ValueError: a non-positive ``--seeds``, ``--num-reads``, ``--num-sweeps``,
            ``--threads``, ``--jobs`` or ``--patience``; a ``--search-fraction`` outside
            (0, 1]; a negative ``--max-extensions``.
    """
    from qsgd.config import AnnealerConfig

    if args.seeds < 1:
        raise ValueError(f"--seeds must be a positive int (got {args.seeds})")
    for flag in ("threads", "jobs", "patience"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be a positive int (got {value})")
    frac = getattr(args, "search_fraction", None)
    if frac is not None and not 0 < frac <= 1:
        raise ValueError(f"--search-fraction must be in (0, 1] (got {frac})")
    if getattr(args, "max_extensions", 0) < 0:
        raise ValueError(f"--max-extensions must be an int >= 0 (got {args.max_extensions})")
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


def parse_experiment_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    annealer_defaults: Mapping[str, Any],
) -> tuple[argparse.Namespace, list[str], dict[str, Any]]:
    """Parse an experiment script's arguments, read its annealer settings, fix its threads.

    Bad input ends the process with exit code 2 and one ``error: ...`` line on stderr (no
    traceback). The thread counts are fixed with :func:`bnn.experiments.fix_threads` (numba's
    too unless ``--jobs`` forks workers).

    Returns:
        ``(args, backends, annealer)``: the namespace and :func:`annealer_settings`'s result.
    """
    from bnn.experiments.methods import fix_threads

    args = parser.parse_args(argv)
    try:
        backends, annealer = annealer_settings(args, annealer_defaults)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    fix_threads(args.threads, numba_too=args.jobs == 1)
    return args, backends, annealer


def shorten_neal(
    methods: Sequence[Any],
    args: argparse.Namespace,
    *,
    epochs: int,
    max_batches: int | None = None,
) -> None:
    """Give the QP-SBGD column on the single-problem ``neal`` backend a shorter budget.

    ``neal`` solves one problem per call and is orders of magnitude slower than ``batched``: it
    runs ``--neal-seeds`` seeds (at most ``--seeds``) for ``epochs`` epochs (and
    ``max_batches`` batches per epoch when given), reusing the ``batched`` column's search
    when that column runs.
    """
    has_batched = any(m.key == "qpsbgd_batched" for m in methods)
    for m in methods:
        if m.key == "qpsbgd_neal":
            m.seeds = list(range(min(args.neal_seeds, args.seeds)))
            m.epochs = epochs
            if max_batches is not None:
                m.max_batches = max_batches
            if has_batched:
                m.search_from = "qpsbgd_batched"


def run_and_write(
    task: Any,
    methods: Sequence[Any],
    args: argparse.Namespace,
    *,
    seeds: Sequence[int],
    title: str,
    stem: str,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """:func:`bnn.experiments.run_experiment`, then :func:`bnn.experiments.write_results` into
    ``--out`` as ``STEM.*``; prints the table (stdout) and the files written (stderr)."""
    from bnn.experiments.harness import run_experiment
    from bnn.experiments.report import write_results

    results = run_experiment(
        task,
        methods,
        seeds=seeds,
        jobs=args.jobs,
        threads=args.threads,
        title=title,
        extra=dict(extra),
    )
    paths = write_results(results, args.out, stem)
    print(results["table"])
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return results
