"""``bnn``: train, resume, evaluate and compare binary-network runs from config files.

Usage::

    bnn train CONFIG [--set KEY=VALUE ...] [--run-dir DIR] [--quiet]
    bnn train --resume RUN_DIR [--set KEY=VALUE ...] [--quiet]
    bnn eval RUN_DIR
    bnn compare RUN_DIR... [--out DIR]
    bnn sweep CONFIG [--grid KEY=VALUES ...] [--seeds 0-4] [--scheduler S] [--out DIR]

Exit codes: 0 success, 2 bad input (one line on stderr, nothing overwritten), 3 stopped at the
QPU cap (``annealer.max_qpu_seconds``/``max_qpu_calls``; a checkpoint was saved, resume with a
higher cap or another backend), 130 interrupted (a checkpoint was saved; resume with
``bnn train --resume RUN_DIR``). The work is done by
:mod:`bnn.training` and :mod:`bnn.records`; this module only parses arguments and reports.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_QPU_CAP = 3


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bnn`` command."""
    parser = argparse.ArgumentParser(
        prog="bnn", description="Train binary neural networks with QP-SBGD and baselines."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train from a config file, or resume a run")
    train.add_argument("config", nargs="?", help="TOML (or YAML) run config")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set annealer.backend=tabu --set train.epochs=3",
    )
    train.add_argument("--run-dir", help="run directory (overrides output.run_dir)")
    train.add_argument(
        "--quiet", action="store_true", help="no progress bars (automatic when CI=true or no TTY)"
    )

    ev = sub.add_parser("eval", help="reload a run's checkpoint and evaluate it on the test data")
    ev.add_argument("run_dir", metavar="RUN_DIR")

    cmp_ = sub.add_parser("compare", help="markdown table and overlay plot of several runs")
    cmp_.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    cmp_.add_argument("--out", default="comparison", help="output folder (default: comparison)")

    sub.add_parser(
        "sweep",
        help="grid of configs x seeds as Dask tasks, gathered into one table (bnn sweep -h)",
        add_help=False,
    )
    return parser


_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")


def _fail(message: str) -> int:
    """Print ``message`` as one line on stderr (escape sequences and line breaks removed)."""
    text = " ".join(_ESCAPES.sub("", message).split())
    text = "".join(ch for ch in text if ch.isprintable())
    print(f"bnn: error: {text}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _os_error(exc: OSError) -> str:
    """``OSError`` as one line naming the path: ``'runs/x': Permission denied``."""
    if exc.filename is None or not exc.strerror:
        return str(exc)
    target = f" -> {str(exc.filename2)!r}" if exc.filename2 is not None else ""
    return f"{str(exc.filename)!r}{target}: {exc.strerror}"


def _train(args: argparse.Namespace) -> int:
    from bnn.config import RunConfig
    from bnn.training import resume_run, train_from_config

    if args.resume and args.config:
        return _fail("give either CONFIG or --resume RUN_DIR, not both")
    if args.resume:
        if args.run_dir:
            return _fail("--run-dir cannot be used with --resume (the run stays in RUN_DIR)")
        summary = resume_run(args.resume, args.overrides, quiet=args.quiet)
    elif args.config:
        updates = {"output.run_dir": args.run_dir} if args.run_dir else None
        cfg = RunConfig.from_file(args.config, args.overrides, updates=updates)
        summary = train_from_config(cfg, quiet=args.quiet)
    else:
        return _fail("bnn train needs CONFIG or --resume RUN_DIR")
    _report(summary)
    if summary["status"] == "interrupted":
        print(f"interrupted: resume with  bnn train --resume {summary['run_dir']}")
        return EXIT_INTERRUPTED
    if summary["status"] == "qpu_cap_reached":
        print(
            f"stopped: {summary.get('stop_reason')}; checkpoint saved. Resume with  bnn train "
            f"--resume {summary['run_dir']} --set annealer.max_qpu_seconds=<more>  (or "
            "annealer.max_qpu_calls), or on a classical backend with  --set annealer.backend=neal "
            "--set annealer.pack=false",
            file=sys.stderr,
        )
        return EXIT_QPU_CAP
    return EXIT_OK


def _report(summary: dict) -> None:
    final = summary.get("final", {})
    parts = [f"{summary['name']}: {summary['status']} after {summary['epochs_completed']} epoch(s)"]
    for split in ("val", "test"):
        acc = final.get(f"{split}_accuracy")
        if acc is not None:
            parts.append(f"{split} accuracy {acc:.4f}")
    if summary.get("majority_rate") is not None:
        parts.append(f"majority rate {summary['majority_rate']:.4f}")
    print(", ".join(parts))
    run_dir = summary.get("run_dir")
    if run_dir:
        print(f"results in {Path(run_dir).resolve()}: {', '.join(summary.get('files', []))}")


def _eval(args: argparse.Namespace) -> int:
    from bnn.training import evaluate_run

    result = evaluate_run(args.run_dir)
    for key in ("epoch", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "majority_rate"):
        if result.get(key) is not None:
            value = result[key]
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"written to {Path(args.run_dir, 'eval.json').resolve()}")
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from bnn.records import compare_runs

    result = compare_runs(args.run_dirs, args.out)
    print(result["table"], end="")
    print(f"written to {', '.join(str(Path(p).resolve()) for p in result['files'])}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bnn`` command; returns the exit code."""
    from bnn.checkpoint import CheckpointError
    from qsgd.errors import QSGDError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:
        from bnn.sweep import main_sweep

        return main_sweep(argv[1:])
    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "eval": _eval, "compare": _compare}
    try:
        return handlers[args.command](args)
    except (QSGDError, CheckpointError) as exc:
        return _fail(str(exc))
    except OSError as exc:  # a missing, unreadable or unwritable path
        return _fail(_os_error(exc))
    except KeyboardInterrupt:  # before training started or a second Ctrl-C
        print("bnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
