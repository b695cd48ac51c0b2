"""Paper experiment: a1a (Adult), 10-layer binary MLP (all 123 features, width 128, batch 16).

Compares QP-SBGD (annealer backends, default ``batched`` and ``neal``) with BinaryConnect,
signSGD, ProxQuant and a full-precision reference of the same architecture, with an equal
hyperparameter-search budget on a validation split carved from ``a1a`` and test accuracy on
``a1a.t`` (reported next to the majority rate 0.759). See ``docs/experiments.md``.

Run::

    python examples/a1a_10layer.py --seeds 5 --out results/a1a_10layer
    python examples/a1a_10layer.py --smoke --out /tmp/smoke      # seconds, for CI

QP-SBGD on ``neal`` (one dimod call per problem) is far slower than the batched annealer on
this model; ``--neal-seeds``/``--neal-epochs``/``--neal-batches`` run it on a reduced protocol,
reusing the setting chosen by the ``batched`` search (same algorithm, another solver).
"""

from __future__ import annotations

import argparse
import sys

import torch

from bnn.data import get_dataset
from bnn.experiments import (
    Task,
    add_common_arguments,
    annealer_settings,
    build_methods,
    command_line,
    make_grid,
    run_experiment,
    shrink_tabular,
    write_results,
)
from bnn.models import BinaryMLP

LR = [0.003, 0.01, 0.03, 0.1]


def grids(smoke: bool, curvature_scale: str = "fisher") -> dict[str, list[dict]]:
    """Equal budget (4 settings) per method; QP-SBGD: 2 learning rates x 2 curvature scales.

    With ``curvature_scale="fisher"`` (default; see docs/tuning.md) the curvature values are
    relative to the empirical Fisher of the layer's outputs, so they span the same range in
    every layer; with ``"unit"`` they multiply ``X^T X / B`` directly.
    """
    if smoke:
        return {
            "qpsbgd": make_grid(lr=[0.01], curvature=[0.01]),
            **{k: make_grid(lr=[0.01]) for k in ("binaryconnect", "signsgd", "proxquant")},
            "full_precision": make_grid(lr=[0.003]),
        }
    return {
        "qpsbgd": (
            make_grid(lr=[0.003, 0.01], curvature=[3.0, 30.0])
            if curvature_scale == "fisher"
            else make_grid(lr=[0.003, 0.01], curvature=[0.01, 0.1])
        ),
        "binaryconnect": make_grid(lr=LR),
        "signsgd": make_grid(lr=[0.001, 0.003, 0.01, 0.03]),
        "proxquant": make_grid(lr=LR),
        "full_precision": make_grid(lr=[0.0003, 0.001, 0.003, 0.01]),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_backends=["neal", "batched"])
    parser.add_argument(
        "--curvature-scale",
        choices=["fisher", "unit"],
        default="fisher",
        help="QP-SBGD output-curvature estimate (docs/tuning.md)",
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--search-epochs", type=int, default=1)
    parser.add_argument(
        "--max-batches", type=int, default=None, help="cap on batches per epoch (all methods)"
    )
    parser.add_argument("--data-root", default=None, help="folder with a1a and a1a.t")
    parser.add_argument("--neal-seeds", type=int, default=1, help="seeds of QP-SBGD (neal)")
    parser.add_argument("--neal-epochs", type=int, default=1, help="epochs of QP-SBGD (neal)")
    parser.add_argument(
        "--neal-batches", type=int, default=10, help="batches per epoch of QP-SBGD (neal)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backends, annealer = annealer_settings(args, {"num_reads": 1, "num_sweeps": 10})
    kwargs = {"root": args.data_root} if args.data_root else {}
    ds = get_dataset("a1a", features="all", val_fraction=0.1, seed=0, **kwargs)
    if args.smoke:
        ds = shrink_tabular(ds, train=48, val=64, test=256)
    width, depth = (8, 3) if args.smoke else (128, 10)
    epochs, search_epochs = (1, 1) if args.smoke else (args.epochs, args.search_epochs)
    task = Task(
        "a1a_10layer",
        ds,
        lambda d, binary: BinaryMLP(d.num_features, [width] * (depth - 1), 2, binary=binary),
        epochs=epochs,
        batch_size=16,
        search_epochs=search_epochs,
        max_batches=3 if args.smoke else args.max_batches,
    )
    include = args.methods.split(",") if args.methods else None
    methods = build_methods(
        grids(args.smoke, args.curvature_scale),
        backends=backends,
        annealer=annealer,
        include=include,
        qpsbgd_options={"curvature_scale": args.curvature_scale},
    )
    has_batched = any(m.key == "qpsbgd_batched" for m in methods)
    for m in methods:
        if m.key == "qpsbgd_neal" and not args.smoke:
            m.seeds = list(range(min(args.neal_seeds, args.seeds)))
            m.epochs, m.max_batches = args.neal_epochs, args.neal_batches
            if has_batched:
                m.search_from = "qpsbgd_batched"
    seeds = list(range(1 if args.smoke else args.seeds))
    results = run_experiment(
        task,
        methods,
        seeds=seeds,
        title=f"a1a, 10-layer binary MLP (width {width}, batch 16), {len(seeds)} seeds",
        extra={
            "command": command_line("examples/a1a_10layer.py", argv),
            "annealer": annealer,
            "smoke": args.smoke,
        },
    )
    paths = write_results(results, args.out, "a1a_10layer")
    print(results["table"])
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
