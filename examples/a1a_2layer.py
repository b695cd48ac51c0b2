"""Paper experiment: a1a (Adult), 2-layer binary MLP on 3 selected features (hidden 5, batch 20).

The paper's D-Wave setting: the inputs are the three a1a features the reference code selects
(:data:`bnn.data.A1A_PAPER_FEATURES`), a hidden layer of 5 binary neurons and batch size 20, so
every layer problem has at most 5 spins and fits a QPU. Here the QPU is replaced by
``mock-dwave`` (the real Advantage graph, embedding and chains, simulated offline), next to
``neal``, the ``batched`` annealer, QP-SBGD's c = 0 ablation, BinaryConnect, signSGD, ProxQuant,
Bop and full precision, under the fair protocol of :mod:`bnn.experiments` (step sizes searched
alike, grids extended at edges, best-validation-epoch selection with early stopping, fixed
threads), on a validation split, with test accuracy on ``a1a.t`` (majority rate 0.759). The simulated QPU costs seconds per step, so ``mock-dwave`` runs on a
reduced protocol (``--qpu-seeds``, ``--qpu-epochs``, ``--qpu-batches``) with the setting chosen
by the ``neal`` search (same algorithm, another solver). With three ±1 inputs there are only 8 distinct inputs, which bounds the
attainable accuracy for every method.

Run::

    python examples/a1a_2layer.py --seeds 5 --out results/a1a_2layer
    python examples/a1a_2layer.py --smoke --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import sys

from bnn.data import A1A_PAPER_FEATURES, get_dataset
from bnn.experiments import (
    Task,
    add_common_arguments,
    annealer_settings,
    build_methods,
    command_line,
    fair_grids,
    fix_threads,
    run_experiment,
    shrink_tabular,
    write_results,
)
from bnn.models import BinaryMLP


def grids(smoke: bool) -> dict[str, dict[str, list[float]]]:
    """The search axes of every method (extended by the harness when a choice sits on an edge).

    Every binary method searches its step size ``lr`` on the same values, the non-binary
    parameters' Adam lr tied to it (QP-SBGD ``other_lr = lr``); QP-SBGD adds its curvature,
    the c = 0 ablation is the same pipeline at curvature 0, Bop searches ``threshold`` x
    ``gamma`` x its Adam ``lr``.
    """
    if smoke:
        return fair_grids(
            [0.05],
            [0.1],
            baseline_lr=[0.01],
            full_precision_lr=[0.01],
            bop_axes={"threshold": [1e-4], "gamma": [1e-2]},
        )
    return fair_grids([0.003, 0.01, 0.03], [0.1, 1.0, 10.0])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_backends=["mock-dwave", "neal", "batched"])
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs of every run")
    parser.add_argument("--data-root", default=None, help="folder with a1a and a1a.t")
    parser.add_argument("--qpu-seeds", type=int, default=2, help="seeds of QP-SBGD (mock-dwave)")
    parser.add_argument("--qpu-epochs", type=int, default=1, help="epochs of QP-SBGD (mock-dwave)")
    parser.add_argument(
        "--qpu-batches", type=int, default=20, help="batches per epoch of QP-SBGD (mock-dwave)"
    )
    args = parser.parse_args(argv)
    try:
        backends, annealer = annealer_settings(args, {"num_reads": 10, "num_sweeps": 100})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    fix_threads(args.threads, numba_too=args.jobs == 1)
    kwargs = {"root": args.data_root} if args.data_root else {}
    ds = get_dataset("a1a", features=list(A1A_PAPER_FEATURES), val_fraction=0.1, seed=0, **kwargs)
    if args.smoke:
        ds = shrink_tabular(ds, train=60, val=64, test=256)
    epochs = 1 if args.smoke else args.epochs
    task = Task(
        "a1a_2layer",
        ds,
        lambda d, binary: BinaryMLP(d.num_features, [5], 2, binary=binary),
        epochs=epochs,
        batch_size=20,
        search_fraction=args.search_fraction or 1.0,
        patience=args.patience if args.patience is not None else (None if args.smoke else 5),
        max_extensions=0 if args.smoke else args.max_extensions,
    )
    include = args.methods.split(",") if args.methods else None
    methods = build_methods(
        grids(args.smoke), backends=backends, annealer=annealer, include=include
    )
    has_neal = any(m.key == "qpsbgd_neal" for m in methods)
    for m in methods:
        if m.key == "qpsbgd_mock-dwave" and not args.smoke:
            m.seeds = list(range(min(args.qpu_seeds, args.seeds)))
            m.epochs, m.max_batches = args.qpu_epochs, args.qpu_batches
            if has_neal:
                m.search_from = "qpsbgd_neal"
    seeds = list(range(1 if args.smoke else args.seeds))
    results = run_experiment(
        task,
        methods,
        seeds=seeds,
        jobs=args.jobs,
        threads=args.threads,
        title=f"a1a, 2-layer binary MLP (3 features, hidden 5, batch 20), {len(seeds)} seeds",
        extra={
            "command": command_line("examples/a1a_2layer.py", argv),
            "annealer": annealer,
            "smoke": args.smoke,
        },
    )
    paths = write_results(results, args.out, "a1a_2layer")
    print(results["table"])
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
