"""Paper experiment: binary graph convolutional networks on Karate club, Cora and CiteSeer.

A two-layer binary GCN (Kipf & Welling) trained full-batch on the Planetoid public splits
(Cora, CiteSeer: the ``.npz`` files shipped in ``bnn/datasets/``) and on Zachary's Karate club (one labelled node per
club plus seeded extra nodes), comparing QP-SBGD (annealer backends, default ``batched`` and
``neal``) with BinaryConnect, signSGD, ProxQuant, Bop, the c = 0 ablation of QP-SBGD and full precision under the fair protocol of
:mod:`bnn.experiments` (every method searches its step size, grids extended at edges, model
selection and test accuracy at the best-validation epoch with early stopping, fixed threads).

Run::

    python examples/gcn.py --datasets karate --seeds 5 --epochs 200 --threads 1 --out results/gcn --overwrite
    python examples/gcn.py --smoke                  # seconds; writes runs/gcn/gcn_karate.*

Results go to ``--out`` (default ``runs/gcn``); an existing ``gcn_<dataset>.{json,md,png}``
there is refused before any training unless ``--overwrite`` is given.

QP-SBGD on ``neal`` solves one dimod problem per neuron (64 problems of 1433 spins per step on
Cora's first layer); ``--neal-seeds``/``--neal-epochs`` run it on a reduced protocol on the
Planetoid graphs, reusing the setting the ``batched`` search chose.
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
    usage_errors,
)
from bnn.models import BinaryGCN

DATASETS = ("karate", "cora", "citeseer")


def grids(smoke: bool, curvature_scale: str = "fisher") -> dict[str, dict[str, list[float]]]:
    """The search axes of every method (extended by the harness when a choice sits on an edge).

    Every binary method searches its step size ``lr`` on the same values; the non-binary
    parameters' Adam lr is tied to it (QP-SBGD ``other_lr = lr``). QP-SBGD adds its curvature
    (``curvature_scale="fisher"``: relative to the empirical Fisher of the layer outputs,
    docs/tuning.md), the c = 0 ablation is the same pipeline at curvature 0, and Bop, which
    has no step size, searches ``threshold`` x ``gamma`` x its Adam ``lr``.
    """
    if smoke:
        return fair_grids(
            [0.01],
            [3.0],
            qpsbgd_lr=[0.03, 0.1],
            c0_lr=[0.05],
            bop_axes={"threshold": [1e-4], "gamma": [1e-2]},
            proxquant_reg_rate=[1e-2],
        )
    curvature = [3.0, 30.0, 300.0] if curvature_scale == "fisher" else [0.001, 0.01, 0.1]
    return fair_grids([0.003, 0.01, 0.03], curvature)


def load(name: str, root: str | None) -> object:
    """The dataset ``name`` with ±1 features (Karate: one-hot ids, 4 extra labelled nodes/club)."""
    if name == "karate":
        return get_dataset("karate", seed=0, extra_per_class=4, val_per_class=3, spins=True)
    kwargs = {"root": root} if root else {}
    return get_dataset(name, spins=True, **kwargs)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_backends=["neal", "batched"], default_out="runs/gcn")
    parser.add_argument(
        "--curvature-scale",
        choices=["fisher", "unit"],
        default="fisher",
        help="QP-SBGD output-curvature estimate (docs/tuning.md)",
    )
    parser.add_argument("--datasets", default="karate,cora,citeseer", help="comma-separated")
    parser.add_argument("--epochs", type=int, default=200, help="maximum epochs of every run")
    parser.add_argument("--hidden", type=int, default=64, help="hidden width (Karate: 16)")
    parser.add_argument("--data-root", default=None, help="folder with cora.npz, citeseer.npz")
    parser.add_argument("--neal-seeds", type=int, default=1)
    parser.add_argument("--neal-epochs", type=int, default=5)
    args, backends, annealer = parse_experiment_args(
        parser, argv, {"num_reads": 1, "num_sweeps": 20}
    )
    names = ["karate"] if args.smoke else [d.strip() for d in args.datasets.split(",")]
    unknown = [d for d in names if d not in DATASETS]
    if unknown:
        parser.error(f"--datasets: unknown dataset {unknown[0]!r}; known: {', '.join(DATASETS)}")
    check_outputs(args.out, [f"gcn_{name}" for name in names], args.overwrite)
    patience = None if args.patience is None and args.smoke else (args.patience or 50)
    include = args.methods.split(",") if args.methods else None
    seeds = list(range(1 if args.smoke else args.seeds))
    out: dict = {}
    for name in names:
        ds = load(name, args.data_root)
        hidden = 16 if name == "karate" else args.hidden
        task = Task(
            f"gcn_{name}",
            ds,
            lambda d, binary, h=hidden: BinaryGCN(
                d.num_features, [h], d.num_classes, binary=binary, dropout=0.5
            ),
            epochs=3 if args.smoke else args.epochs,
            search_fraction=args.search_fraction or 1.0,
            patience=patience,
            max_extensions=1 if args.smoke else args.max_extensions,
            search_seeds=args.search_seeds,
        )
        with usage_errors():  # an unknown --methods key
            methods = build_methods(
                grids(args.smoke, args.curvature_scale),
                backends=backends,
                annealer=annealer,
                include=include,
                qpsbgd_options={"curvature_scale": args.curvature_scale},
            )
        if name != "karate" and not args.smoke:
            shorten_neal(methods, args, epochs=args.neal_epochs)
        results = run_and_write(
            task,
            methods,
            args,
            seeds=seeds,
            title=f"{name}, binary GCN (hidden {hidden}, full batch), {len(seeds)} seeds",
            stem=f"gcn_{name}",
            extra={
                "command": command_line("examples/gcn.py", argv),
                "annealer": annealer,
                "smoke": args.smoke,
            },
        )
        out[name] = results
    return out


if __name__ == "__main__":
    main()
