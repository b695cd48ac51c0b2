"""Paper experiment: the MNIST digit-pairs table (0/2, 1/2, 1/7), on scikit-learn's 8x8 digits.

The paper trains a binary MLP on pairs of MNIST digits. MNIST is not available offline here,
so this script uses scikit-learn's 8x8 handwritten digits (1797 images, about 180 per digit)
as the **stand-in**: the same pairs, 64 ±1 inputs (the sign of the standardised pixels) and
splits of 50 % train, 20 % validation and 30 % test per pair (stratified, seed 0). The
absolute numbers are therefore not the paper's MNIST numbers. Two models:

* ``--model mlp`` (default): a binary MLP (``--depth`` hidden layers of ``--width``, batch
  norm, sign activations); experiments ``digits_<a>v<b>``;
* ``--model conv``: the binary conv net :class:`bnn.models.BinaryCNN` on the 1x8x8 images
  (``BinaryConv2d(1, c1, 3, padding 1)`` -> BN -> sign -> ``BinaryConv2d(c1, c2, 3, stride 2,
  padding 1)`` -> BN -> sign -> ``BinaryLinear(16 c2, 2)``, all weights ±1, ``--channels
  c1,c2``); experiments ``digits_conv_<a>v<b>``. QP-SBGD solves one problem per output
  channel over the ``in_channels x 3 x 3`` kernel, with the unfolded patches as inputs.

Every pair is one experiment under the fair protocol of :mod:`bnn.experiments` (QP-SBGD and
its c = 0 ablation, BinaryConnect, signSGD, ProxQuant, Bop and full precision; step sizes
searched alike, grids extended at edges, selection and test accuracy at the best-validation
epoch with early stopping, fixed threads); it writes ``digits_<a>v<b>.{json,md,png}``.

Run::

    python examples/digits_pairs.py --seeds 5 --epochs 50 --patience 10 --threads 1 --out results/digits --overwrite
    python examples/digits_pairs.py --model conv --seeds 5 --epochs 40 --patience 10 --threads 1 --out results/digits --overwrite
    python examples/digits_pairs.py --smoke         # seconds; writes runs/digits/digits_0v2.*

Results go to ``--out`` (default ``runs/digits``); an existing result file of a pair there is
refused before any training unless ``--overwrite`` is given.
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
    shrink_tabular,
    usage_errors,
)
from bnn.models import BinaryCNN, BinaryMLP

PAIRS = ((0, 2), (1, 2), (1, 7))


def grids(smoke: bool) -> dict[str, dict[str, list[float]]]:
    """The search axes of every method (extended by the harness at edges): the step size
    ``lr`` on the same values for every binary method, the non-binary Adam lr tied to it;
    QP-SBGD adds the (fisher-scaled) curvature, Bop ``threshold`` x ``gamma`` x its Adam lr."""
    if smoke:
        return fair_grids(
            [0.01],
            [30.0],
            bop_axes={"threshold": [1e-4], "gamma": [1e-2]},
            proxquant_reg_rate=[1e-2],
        )
    return fair_grids([0.001, 0.003, 0.01], [3.0, 30.0, 300.0])


def _pairs(text: str) -> list[tuple[int, int]]:
    """``--pairs`` (``a/b,c/d,...``) as digit pairs; ValueError unless distinct digits 0-9."""
    bad = ValueError(f"--pairs must be distinct digits 0-9 like 1/7 (got {text!r})")
    try:
        pairs = [(int(a), int(b)) for a, _, b in (p.partition("/") for p in text.split(","))]
    except ValueError:
        raise bad from None
    if any(len(set(pair)) != 2 or not all(0 <= d <= 9 for d in pair) for pair in pairs):
        raise bad
    return pairs


def _channels(text: str) -> tuple[int, int]:
    """``--channels`` (``c1,c2``) of the conv net; ValueError unless two positive ints."""
    bad = ValueError(f"--channels must be two positive ints like 8,16 (got {text!r})")
    try:
        c1, c2 = (int(c) for c in text.split(","))
    except ValueError:
        raise bad from None
    if c1 < 1 or c2 < 1:
        raise bad
    return c1, c2


def _check(args: argparse.Namespace) -> None:
    """The script's own checks (ValueError: exit 2 through ``parse_experiment_args``)."""
    _channels(args.channels)
    _pairs(args.pairs)
    for flag in ("epochs", "width", "depth", "batch_size"):
        if getattr(args, flag) < 1:
            raise ValueError(
                f"--{flag.replace('_', '-')} must be a positive int (got {getattr(args, flag)})"
            )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_backends=["batched"], default_out="runs/digits")
    parser.add_argument(
        "--pairs", default="0/2,1/2,1/7", help="comma-separated digit pairs (default: the paper's)"
    )
    parser.add_argument("--epochs", type=int, default=50, help="maximum epochs of every run")
    parser.add_argument("--width", type=int, default=64, help="width of the hidden layers")
    parser.add_argument("--depth", type=int, default=2, help="number of hidden layers")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--model",
        choices=("mlp", "conv"),
        default="mlp",
        help="binary MLP (default) or the binary conv net BinaryCNN",
    )
    parser.add_argument(
        "--channels", default="8,16", help="conv net: channels c1,c2 of its two conv layers"
    )
    args, backends, annealer = parse_experiment_args(
        parser, argv, {"num_reads": 1, "num_sweeps": 10}, validate=_check
    )
    pairs = _pairs(args.pairs)[: 1 if args.smoke else None]
    include = args.methods.split(",") if args.methods else None
    seeds = list(range(1 if args.smoke else args.seeds))
    width, depth = (8, 1) if args.smoke else (args.width, args.depth)
    channels = (2, 4) if args.smoke else _channels(args.channels)
    conv = args.model == "conv"
    prefix = "digits_conv" if conv else "digits"
    check_outputs(args.out, [f"{prefix}_{a}v{b}" for a, b in pairs], args.overwrite)
    if conv:
        c1, c2 = channels
        arch = f"binary conv net BinaryCNN (channels {c1},{c2})"

        def factory(d, binary):
            return BinaryCNN(2, channels=(c1, c2), image_size=8, binary=binary)
    else:
        arch = f"binary MLP {depth}x{width}"

        def factory(d, binary):
            return BinaryMLP(d.num_features, [width] * depth, 2, binary=binary)

    out: dict = {}
    for a, b in pairs:
        ds = get_dataset(
            "digits", classes=(a, b), spins=True, seed=0, test_fraction=0.3, val_fraction=0.2
        )
        if args.smoke:
            ds = shrink_tabular(ds, train=64, val=32, test=64)
        task = Task(
            f"{prefix}_{a}v{b}",
            ds,
            factory,
            epochs=2 if args.smoke else args.epochs,
            batch_size=args.batch_size,
            search_fraction=args.search_fraction or 1.0,
            patience=args.patience if args.patience is not None else (None if args.smoke else 10),
            max_extensions=0 if args.smoke else args.max_extensions,
            search_seeds=args.search_seeds,
        )
        with usage_errors():  # an unknown --methods key
            methods = build_methods(
                grids(args.smoke),
                backends=backends,
                annealer=annealer,
                include=include,
                qpsbgd_options={"curvature_scale": "fisher"},
            )
        out[f"{a}v{b}"] = run_and_write(
            task,
            methods,
            args,
            seeds=seeds,
            title=(
                f"digits {a} vs {b} (sklearn 8x8, stand-in for MNIST), {arch}, {len(seeds)} seeds"
            ),
            stem=f"{prefix}_{a}v{b}",
            extra={
                "command": command_line("examples/digits_pairs.py", argv),
                "annealer": annealer,
                "smoke": args.smoke,
                "model": arch,
                "dataset": "sklearn digits 8x8 (stand-in for MNIST), splits 50/20/30, seed 0",
            },
        )
    return out


if __name__ == "__main__":
    main()
