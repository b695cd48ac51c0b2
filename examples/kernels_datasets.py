"""All data sets x two trainable ansätze x 3 seeds: accuracy before/after alignment training.

python examples/kernels_datasets.py [--smoke] [--no-plots] [--out DIR] [--overwrite]
(default --out runs/kernels/datasets)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qkernels.config import ExperimentConfig
from qkernels.experiment import run_experiment

CONFIG = Path(__file__).parent / "configs" / "kernels_datasets.toml"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/kernels/datasets", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace results in --out")
    parser.add_argument("--smoke", action="store_true", help="reduced sizes (CI)")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")
    args = parser.parse_args(argv)
    cfg = ExperimentConfig.from_file(CONFIG)
    if args.no_plots:
        cfg = cfg.model_copy(update={"plots": False})
    result = run_experiment(cfg, args.out, smoke=args.smoke, overwrite=args.overwrite)
    print((Path(args.out) / "results.md").read_text())
    return result


if __name__ == "__main__":
    main()
