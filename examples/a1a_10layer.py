"""Paper experiment: a1a (Adult), 10-layer binary MLP (all 123 features, width 128, batch 16).

Compares QP-SBGD (annealer backend, default ``batched``), its curvature-0 ablation,
BinaryConnect, signSGD, ProxQuant, Bop and a full-precision reference of the same architecture
under the fair protocol of :mod:`bnn.experiments` (every method searches its step size, grids
extended at edges, selection and test accuracy at the best-validation epoch with early
stopping, fixed threads), on a validation split carved from ``a1a`` and test accuracy on
``a1a.t`` (reported next to the majority rate 0.759). See ``docs/experiments.md``.

Run::

    python examples/a1a_10layer.py --seeds 5 --epochs 25 --patience 5 --threads 1 --out results/a1a_10layer --overwrite
    python examples/a1a_10layer.py --smoke    # seconds, for CI; writes runs/a1a_10layer/

Results go to ``--out`` (default ``runs/a1a_10layer``); an existing ``a1a_10layer.{json,md,png}``
there is refused before any training unless ``--overwrite`` is given.

QP-SBGD on ``neal`` (``--backend neal``; one dimod call per problem) is far slower than the
batched annealer on this model; ``--neal-seeds``/``--neal-epochs``/``--neal-batches`` run it on a reduced protocol,
reusing the setting chosen by the ``batched`` search (same algorithm, another solver).
"""

from __future__ import annotations

import argparse

from bnn.data import get_dataset
from bnn.experiments import (
    Task,
    add_common_arguments,
    build_methods,
    check_outputs,
    command_line,
    fair_grids,
    parse_experiment_args,
    run_and_write,
    shorten_neal,
    shrink_tabular,
    usage_errors,
)
from bnn.models import BinaryMLP


def grids(smoke: bool, curvature_scale: str = "fisher") -> dict[str, dict[str, list[float]]]:
    """The search axes of every method (extended by the harness when a choice sits on an edge).

    Every binary method searches its step size ``lr`` on the same values; the non-binary
    parameters' Adam lr is tied to it (QP-SBGD ``other_lr = lr``). QP-SBGD adds its curvature
    (``curvature_scale="fisher"``: relative to the empirical Fisher of the layer outputs, see
    docs/tuning.md; ``"unit"``: it multiplies ``X^T X / B`` directly), the c = 0 ablation is
    the same pipeline at curvature 0, and Bop, which has no step size, searches
    ``threshold`` x ``gamma`` x its Adam ``lr``.
    """
    if smoke:
        return fair_grids(
            [0.01],
            [30.0],
            qpsbgd_lr=[0.003, 0.01],
            full_precision_lr=[0.003],
            bop_axes={"threshold": [1e-4], "gamma": [1e-2]},
            proxquant_reg_rate=[1e-2],
        )
    curvature = [3.0, 30.0, 300.0] if curvature_scale == "fisher" else [0.01, 0.1, 1.0]
    return fair_grids([0.001, 0.003, 0.01], curvature)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_backends=["batched"], default_out="runs/a1a_10layer")
    parser.add_argument(
        "--curvature-scale",
        choices=["fisher", "unit"],
        default="fisher",
        help="QP-SBGD output-curvature estimate (docs/tuning.md)",
    )
    parser.add_argument("--epochs", type=int, default=25, help="maximum epochs of every run")
    parser.add_argument(
        "--max-batches", type=int, default=None, help="cap on batches per epoch (all methods)"
    )
    parser.add_argument("--data-root", default=None, help="folder with a1a and a1a.t")
    parser.add_argument("--neal-seeds", type=int, default=1, help="seeds of QP-SBGD (neal)")
    parser.add_argument("--neal-epochs", type=int, default=1, help="epochs of QP-SBGD (neal)")
    parser.add_argument(
        "--neal-batches", type=int, default=10, help="batches per epoch of QP-SBGD (neal)"
    )
    args, backends, annealer = parse_experiment_args(
        parser, argv, {"num_reads": 1, "num_sweeps": 10}
    )
    check_outputs(args.out, ["a1a_10layer"], args.overwrite)
    kwargs = {"root": args.data_root} if args.data_root else {}
    ds = get_dataset("a1a", features="all", val_fraction=0.1, seed=0, **kwargs)
    if args.smoke:
        ds = shrink_tabular(ds, train=48, val=64, test=256)
    width, depth = (8, 3) if args.smoke else (128, 10)
    epochs = 2 if args.smoke else args.epochs
    task = Task(
        "a1a_10layer",
        ds,
        lambda d, binary: BinaryMLP(d.num_features, [width] * (depth - 1), 2, binary=binary),
        epochs=epochs,
        batch_size=16,
        search_fraction=args.search_fraction or 1.0,
        patience=args.patience if args.patience is not None else (None if args.smoke else 5),
        max_extensions=1 if args.smoke else args.max_extensions,
        search_seeds=args.search_seeds,
        max_batches=3 if args.smoke else args.max_batches,
    )
    include = args.methods.split(",") if args.methods else None
    with usage_errors():  # an unknown --methods key
        methods = build_methods(
            grids(args.smoke, args.curvature_scale),
            backends=backends,
            annealer=annealer,
            include=include,
            qpsbgd_options={"curvature_scale": args.curvature_scale},
        )
    if not args.smoke:
        shorten_neal(methods, args, epochs=args.neal_epochs, max_batches=args.neal_batches)
    seeds = list(range(1 if args.smoke else args.seeds))
    return run_and_write(
        task,
        methods,
        args,
        seeds=seeds,
        title=f"a1a, 10-layer binary MLP (width {width}, batch 16), {len(seeds)} seeds",
        stem="a1a_10layer",
        extra={
            "command": command_line("examples/a1a_10layer.py", argv),
            "annealer": annealer,
            "smoke": args.smoke,
        },
    )


if __name__ == "__main__":
    main()
