"""Command line: ``qkernels run CONFIG [--out DIR] [--smoke]`` and ``qkernels sweep ...`` (no logic here)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qkernels`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="qkernels", description="Quantum embedding kernel experiments"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment config (TOML)")
    run.add_argument("config", help="path to a TOML experiment config")
    run.add_argument(
        "--out", default=None, help="output directory (default results/kernels/<name>)"
    )
    run.add_argument("--smoke", action="store_true", help="reduced sizes (CI)")
    sub.add_parser(
        "sweep", help="grid of configs x seeds as Dask tasks (qkernels sweep -h)", add_help=False
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:
        from qkernels.sweep import main_sweep

        return main_sweep(argv[1:])
    args = parser.parse_args(argv)

    from qkernels.config import ExperimentConfig
    from qkernels.experiment import run_experiment
    from qsgd.errors import QSGDError

    try:
        cfg = ExperimentConfig.from_file(args.config)
    except QSGDError as exc:
        print(f"qkernels: {exc}", file=sys.stderr)
        return 2
    out = args.out or f"results/kernels/{cfg.name}"
    result = run_experiment(cfg, out, smoke=args.smoke)
    print(f"wrote {out}/results.json, {out}/results.md ({result['total_seconds']:.1f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
