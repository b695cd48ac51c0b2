"""Command-line helpers of the experiment scripts (``examples/*.py``): shared arguments.

:func:`add_common_arguments` adds the options every script shares, :func:`annealer_settings`
validates them and reads ``--annealer-config``, :func:`command_line` records the command,
:func:`parse_experiment_args` parses (bad input: :func:`usage_error`), :func:`shorten_backend`
gives a slow backend's column a reduced protocol, :func:`check_outputs` refuses to replace
existing result files (unless ``--overwrite``) and :func:`run_and_write` runs and writes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn


# --------------------------------------------------------------------- command line
def add_common_arguments(
    parser: argparse.ArgumentParser, *, default_backends: Sequence[str], default_out: str
) -> argparse.ArgumentParser:
    """The options every experiment script shares.

    ``--seeds N`` (seeds 0..N-1), ``--smoke`` (tiny run for CI), ``--out DIR`` (default
    ``default_out``, the script's folder under ``runs/``: only the documented results commands
    write into ``results/``), ``--overwrite`` (replace result files that already exist in
    ``--out``; without it a run refuses them before any training, :func:`check_outputs`),
    ``--backend NAME`` (repeatable; the QP-SBGD columns), ``--annealer-config FILE`` (TOML
    with an ``[annealer]`` table: its backend and run settings), ``--num-reads``,
    ``--num-sweeps``, ``--methods`` (comma-separated keys), ``--threads`` (torch and numba),
    ``--jobs`` (worker processes), ``--patience``, ``--search-fraction``, ``--search-seeds``,
    ``--max-extensions``,
    ``--resume-dir`` (the trial store, :mod:`bnn.trial_store`).
    """
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    parser.add_argument("--smoke", action="store_true", help="tiny run (seconds), for CI")
    parser.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace result files that already exist in --out",
    )
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
        "--search-seeds",
        type=int,
        default=1,
        help="search runs per setting (seeds 1000, 1001, ...), scored by their mean validation "
        "accuracy, for every method",
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
    for flag in ("threads", "jobs", "patience", "search_seeds"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be a positive int (got {value})")
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


def check_outputs(
    out: str | Path,
    stems: Iterable[str],
    overwrite: bool,
    *,
    suffixes: Sequence[str] | None = None,
) -> None:
    """Refuse, before any work, to replace result files a run would write into ``out``.

    For every ``stem``, the files ``STEM.json``, ``STEM.md`` and ``STEM.png``
    (:func:`bnn.experiments.report.result_files`; only ``STEM.<suffix>`` for the given
    ``suffixes``, e.g. ``["json"]`` for a script that writes a JSON alone) must not exist unless
    ``overwrite`` (``--overwrite``) is given; an ``out`` that is an existing file is always
    refused. Bad
    cases end the process through :func:`usage_error` (exit code 2, one line naming the file).
    Nothing is created.

    Example:
        >>> import contextlib, io, pathlib, tempfile
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> check_outputs(out, ["gcn_karate"], overwrite=False)  # nothing there yet: fine
        >>> _ = (out / "gcn_karate.md").write_text("earlier run")
        >>> check_outputs(out, ["gcn_karate"], overwrite=True)  # replacing is asked for: fine
        >>> err = io.StringIO()
        >>> with contextlib.redirect_stderr(err):
        ...     try:
        ...         check_outputs(out, ["gcn_karate"], overwrite=False)
        ...     except SystemExit as exc:
        ...         print(exc.code)
        2
        >>> line = err.getvalue()
        >>> line.startswith("error: ") and "gcn_karate.md already exists" in line
        True
    """
    from bnn.experiments.report import RESULT_SUFFIXES

    out = Path(out)
    if out.exists() and not out.is_dir():
        usage_error(f"--out must be a folder (got {str(out)!r}, an existing file)")
    # the folder is created only when the results are written: make sure it can be, now
    parent = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        usage_error(
            f"--out {str(out)!r} cannot be created: {str(parent)!r} is not a writable folder"
        )
    if overwrite:
        return
    for stem in stems:
        for suffix in RESULT_SUFFIXES if suffixes is None else suffixes:
            path = out / f"{stem}.{suffix}"
            if path.exists():
                usage_error(f"{path} already exists; pass --overwrite to replace it")


def usage_error(message: str) -> NoReturn:
    """End the process on bad command-line input: one ``error: MESSAGE`` line on stderr, exit
    code 2, no traceback.

    Example:
        >>> import contextlib, io
        >>> err = io.StringIO()
        >>> with contextlib.redirect_stderr(err):
        ...     try:
        ...         usage_error("--epochs must be a positive int (got 0)")
        ...     except SystemExit as exc:
        ...         print(exc.code)
        2
        >>> err.getvalue().splitlines()
        ['error: --epochs must be a positive int (got 0)']
    """
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


@contextmanager
def usage_errors() -> Iterator[None]:
    """Treat a ``ValueError`` raised inside as bad command-line input (:func:`usage_error`),
    e.g. an unknown key in ``--methods`` found when the methods are built."""
    try:
        yield
    except ValueError as exc:
        usage_error(str(exc))


def parse_experiment_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    annealer_defaults: Mapping[str, Any],
    *,
    validate: Callable[[argparse.Namespace], None] | None = None,
) -> tuple[argparse.Namespace, list[str], dict[str, Any]]:
    """Parse an experiment script's arguments, read its annealer settings, fix its threads.

    Bad input ends the process with exit code 2 and one ``error: ...`` line on stderr (no
    traceback, :func:`usage_error`): a ``ValueError`` of :func:`annealer_settings`, then of
    ``validate(args)`` (the script's own checks, run after the shared ones). The thread counts
    are fixed with :func:`bnn.experiments.fix_threads` (numba's too unless ``--jobs`` forks
    workers).

    Returns:
        ``(args, backends, annealer)``: the namespace and :func:`annealer_settings`'s result.
    """
    from bnn.experiments.methods import fix_threads

    args = parser.parse_args(argv)
    try:
        backends, annealer = annealer_settings(args, annealer_defaults)
        if validate is not None:
            validate(args)
    except ValueError as exc:
        usage_error(str(exc))
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
    shorten_backend(
        methods,
        "neal",
        seeds=min(args.neal_seeds, args.seeds),
        epochs=epochs,
        max_batches=max_batches,
        search_from="batched",
    )


def shorten_backend(
    methods: Sequence[Any],
    backend: str,
    *,
    seeds: int,
    epochs: int,
    max_batches: int | None = None,
    search_from: str | None = None,
) -> None:
    """Give the QP-SBGD column on a slow ``backend`` (key ``qpsbgd_<backend>``) a reduced
    protocol: seeds ``0..seeds-1``, ``epochs`` epochs, ``max_batches`` batches per epoch when
    given, and the search of the ``qpsbgd_<search_from>`` column when that column runs (the
    same algorithm on another solver). Other methods are left alone.

    Example:
        >>> from bnn.experiments import Method
        >>> ms = [Method("qpsbgd_neal", "n", "qpsbgd"), Method("qpsbgd_mock-dwave", "q", "qpsbgd")]
        >>> shorten_backend(ms, "mock-dwave", seeds=2, epochs=1, max_batches=20, search_from="neal")
        >>> ms[1].seeds, ms[1].epochs, ms[1].max_batches, ms[1].search_from
        ([0, 1], 1, 20, 'qpsbgd_neal')
    """
    runs_source = search_from is not None and any(m.key == f"qpsbgd_{search_from}" for m in methods)
    for m in methods:
        if m.key == f"qpsbgd_{backend}":
            m.seeds = list(range(seeds))
            m.epochs = epochs
            if max_batches is not None:
                m.max_batches = max_batches
            if runs_source:
                m.search_from = f"qpsbgd_{search_from}"


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
    ``--out`` as ``STEM.*``; prints the table (stdout) and the files written (stderr).

    ``STEM``'s files are checked first (:func:`check_outputs`, ``--overwrite``), so an existing
    result is refused before the training, not after it. (Scripts check all their stems right
    after parsing; this is the defensive second check.)
    """
    from bnn.experiments.harness import run_experiment
    from bnn.experiments.report import write_results

    overwrite = bool(getattr(args, "overwrite", False))
    check_outputs(args.out, [stem], overwrite)
    results = run_experiment(
        task,
        methods,
        seeds=seeds,
        jobs=args.jobs,
        threads=args.threads,
        title=title,
        extra=dict(extra),
    )
    paths = write_results(results, args.out, stem, overwrite=overwrite)
    print(results["table"])
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return results
