"""Command line: ``qkernels run CONFIG [--out DIR] [--overwrite] [--smoke]`` and ``qkernels sweep``.

``qkernels run`` writes into ``runs/kernels/<name>`` (relative to the current folder) unless
``--out`` says otherwise, and refuses an output folder that already holds files unless
``--overwrite`` is given. Exit codes: 0 success, 2 bad input (one line on stderr, nothing
written or overwritten). The work is done by :mod:`qkernels.experiment`; no logic here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``qkernels`` command."""
    parser = argparse.ArgumentParser(
        prog="qkernels", description="Quantum embedding kernel experiments"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment config (TOML)")
    run.add_argument("config", help="path to a TOML experiment config")
    run.add_argument(
        "--out",
        default=None,
        help="output folder (default runs/kernels/<name>); must be new or empty",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="allow an output folder that already holds results (they are replaced)",
    )
    run.add_argument("--smoke", action="store_true", help="reduced sizes (CI)")
    sub.add_parser(
        "sweep", help="grid of configs x seeds as Dask tasks (qkernels sweep -h)", add_help=False
    )
    return parser


def _fail(message: str) -> int:
    print(f"qkernels: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    from qkernels.config import ExperimentConfig
    from qkernels.experiment import run_experiment

    cfg = ExperimentConfig.from_file(args.config)
    out = args.out or f"runs/kernels/{cfg.name}"
    result = run_experiment(cfg, out, smoke=args.smoke, overwrite=args.overwrite)
    print(f"wrote {out}/results.json, {out}/results.md ({result['total_seconds']:.1f} s)")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qkernels`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:
        from qkernels.sweep import main_sweep

        return main_sweep(argv[1:])
    args = build_parser().parse_args(argv)

    from qsgd.errors import QSGDError

    try:
        return _run(args)
    except QSGDError as exc:
        return _fail(str(exc))
    except OSError as exc:  # disk full, permissions while writing results
        return _fail(f"cannot write the results: {exc}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
