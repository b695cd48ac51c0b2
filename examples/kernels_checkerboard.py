"""Checkerboard quality experiment: trained vs untrained embedding kernel over 5 seeds.

Run full size (writes runs/kernels/checkerboard/; the committed results were made with
``--out results/kernels/checkerboard --overwrite``):
    python examples/kernels_checkerboard.py
Reduced size for CI:
    python examples/kernels_checkerboard.py --smoke --out /tmp/kc
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qkernels.config import ExperimentConfig
from qkernels.experiment import run_experiment

CONFIG = Path(__file__).parent / "configs" / "kernels_checkerboard.toml"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/kernels/checkerboard", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace results in --out")
    parser.add_argument("--smoke", action="store_true", help="reduced sizes (CI)")
    args = parser.parse_args(argv)
    cfg = ExperimentConfig.from_file(CONFIG)
    result = run_experiment(cfg, args.out, smoke=args.smoke, overwrite=args.overwrite)
    for s in result["summary"]:
        gain = s["test_gain"]["mean"] * 100
        print(
            f"{s['dataset']}/{s['ansatz']}: test accuracy {s['test_before']['mean']:.3f} -> "
            f"{s['test_after']['mean']:.3f} (gain {gain:+.1f} points over {s['n_seeds']} seeds)"
        )
    print(f"wrote {args.out}/results.json and results.md")
    return result


if __name__ == "__main__":
    main()
