"""Diagnostic: how many binary weights each method flips per step on a GCN experiment.

Reads a results file of ``examples/gcn.py`` (e.g. ``results/gcn/gcn_citeseer.json``), trains
every binary method's *chosen* setting once more with one seed for ``--epochs`` epochs (no
early stopping; the experiment's model, data, annealer and threads) and records, after every
optimiser step, the fraction of each binary weight matrix whose sign changed. It answers
"how much does each method move the ±1 network per step?", which the accuracy tables do not:
QP-SBGD's step ``w <- clip(w - lr d)`` with ``d`` in ``{-1, +1}^n`` moves *every* latent
weight by exactly ``lr``, so its flips are set by how many latent weights lie within ``lr``
of zero, while BinaryConnect's Adam step and Bop's momentum threshold scale with the gradient.

Writes ``flip_rates_<task>.json`` (per method: the setting, per-step flip fractions of each
binary weight, their means over steps 1-5 and from step 6 on, and the best validation epoch of
this run) and prints a table. Run::

    python examples/gcn_flip_rates.py results/gcn/gcn_citeseer.json --epochs 30            # -> runs/gcn_flip_rates/
    python examples/gcn_flip_rates.py results/gcn/gcn_citeseer.json --epochs 30 --out results/gcn --overwrite

An existing output file is refused (exit 2) unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gcn  # noqa: E402  (the experiment's model, data and grids)

from bnn.experiments import (  # noqa: E402
    Task,
    build_methods,
    check_outputs,
    command_line,
    fix_threads,
    usage_error,
    write_json,
)
from bnn.experiments.runs import train_once  # noqa: E402

#: Steps counted as the start of training in the summary (the rest is "later").
EARLY_STEPS = 5


class FlipRecorder:
    """Global optimiser step hooks: the sign flips of the binary weights of the outermost
    optimiser that holds any (an inner Adam of the non-binary parameters is ignored)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self._depth = 0
        self._before: list[tuple[str, torch.Tensor, torch.Tensor]] | None = None
        self._handles: list[Any] = []

    def __enter__(self) -> FlipRecorder:
        self._handles = [
            register_optimizer_step_pre_hook(self._pre),
            register_optimizer_step_post_hook(self._post),
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()

    @staticmethod
    def _binary(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
        return [
            p
            for g in opt.param_groups
            for p in g["params"]
            if getattr(p, "_bnn_binary", False) and p.dim() >= 2
        ]

    def _pre(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._depth += 1
        params = self._binary(opt)
        if self._depth == 1 and params:
            # key: the weight's position among the optimiser's binary weights and its shape
            self._before = [
                (f"{i}:" + "x".join(map(str, p.shape)), p, p.detach() >= 0)
                for i, p in enumerate(params)
            ]

    def _post(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._before is not None:
            self.steps.append(
                {
                    name: float(((p.detach() >= 0) != pos).float().mean())
                    for name, p, pos in self._before
                }
            )
            self._before = None


def _summary(steps: list[dict[str, float]]) -> dict[str, dict[str, float | None]]:
    out = {}
    for name in steps[0] if steps else []:
        r = np.array([s[name] for s in steps])
        out[name] = {
            "early_mean": float(r[:EARLY_STEPS].mean()),
            "later_mean": float(r[EARLY_STEPS:].mean()) if len(r) > EARLY_STEPS else None,
            "mean": float(r.mean()),
        }
    return out


def recorded_option(command: str, flag: str) -> str | None:
    """The value of ``flag`` (``--flag V`` or ``--flag=V``) in a recorded command, or None.

    Example:
        >>> recorded_option("python examples/gcn.py --hidden 128 --out x", "--hidden")
        '128'
        >>> recorded_option("python examples/gcn.py --data-root=/d", "--data-root")
        '/d'
    """
    words = shlex.split(command)
    for i, w in enumerate(words):
        if w == flag and i + 1 < len(words):
            return words[i + 1]
        if w.startswith(flag + "="):
            return w.split("=", 1)[1]
    return None


def _methods(results: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The experiment's methods as ``examples/gcn.py`` builds them, for ``keys``."""
    qp = [m for m in results["methods"].values() if m["optimizer"] == "qpsbgd"]
    scale = qp[0]["fixed"].get("curvature_scale", "fisher") if qp else "fisher"
    # without a QP-SBGD column any backend builds the other methods alike
    backends = sorted({m["fixed"]["backend"]["backend"] for m in qp}) or ["batched"]
    annealer = {k: v for k, v in (results["extra"].get("annealer") or {}).items() if k != "seed"}
    built = build_methods(
        gcn.grids(False, scale),
        backends=backends,
        annealer=annealer,
        qpsbgd_options={"curvature_scale": scale},
    )
    return {m.key: m for m in built if m.key in keys}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="a results JSON of examples/gcn.py")
    p.add_argument("--epochs", type=int, default=30, help="epochs of each run (default 30)")
    p.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    p.add_argument(
        "--methods", default=None, help="comma-separated method keys (default: all binary)"
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=None,
        help="hidden width (default: the recorded command's, else gcn.py's default)",
    )
    p.add_argument("--out", default="runs/gcn_flip_rates", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    for flag, value, least in (("--epochs", args.epochs, 1), ("--seed", args.seed, 0)):
        if value < least:
            usage_error(f"{flag} must be an int >= {least} (got {value})")
    if args.hidden is not None and args.hidden < 1:
        usage_error(f"--hidden must be a positive int (got {args.hidden})")
    try:
        results = json.loads(Path(args.results).read_text())
        task_name = results["task"]
    except (OSError, ValueError, KeyError) as exc:
        usage_error(f"results: cannot read a gcn.py results JSON from {args.results!r} ({exc})")
    dataset = task_name.removeprefix("gcn_")
    if not task_name.startswith("gcn_") or dataset not in gcn.DATASETS:
        usage_error(f"results: {args.results!r} is not a gcn.py result (task {task_name!r})")
    binary = [k for k, m in results["methods"].items() if m["binary"]]
    keys = args.methods.split(",") if args.methods else binary
    unknown = [k for k in keys if k not in binary]
    if unknown:
        usage_error(
            f"--methods: {unknown[0]!r} is not a binary method of {args.results}; known: {', '.join(binary)}"
        )
    out_file = Path(args.out) / f"flip_rates_{task_name}.json"
    check_outputs(args.out, [out_file.stem], args.overwrite, suffixes=["json"])

    threads = int(results["protocol"].get("threads", 1))
    fix_threads(threads)
    command = str(results.get("extra", {}).get("command", ""))
    hidden = args.hidden or int(recorded_option(command, "--hidden") or 0) or None
    if hidden is None:
        hidden = 16 if dataset == "karate" else 64  # gcn.py's defaults
    ds = gcn.load(dataset, recorded_option(command, "--data-root"))
    task = Task(
        task_name,
        ds,
        lambda d, binary, h=hidden: gcn.BinaryGCN(
            d.num_features, [h], d.num_classes, binary=binary, dropout=0.5
        ),
        epochs=args.epochs,
    )
    methods = _methods(results, keys)
    record: dict[str, Any] = {
        "source": args.results,
        "command": command_line(
            "examples/gcn_flip_rates.py", argv if argv is not None else sys.argv[1:]
        ),
        "task": task_name,
        "seed": args.seed,
        "epochs": args.epochs,
        "threads": threads,
        "early_steps": EARLY_STEPS,
        "methods": {},
    }
    for key in keys:
        hp = results["methods"][key]["chosen"]
        with FlipRecorder() as rec:
            run = train_once(task, methods[key], hp, args.seed, epochs=args.epochs, patience=None)
        if len(rec.steps) != run["epochs_run"]:  # full batch: one step per epoch
            raise RuntimeError(
                f"{key}: recorded {len(rec.steps)} optimiser steps in {run['epochs_run']} "
                "epochs (a run taken from a trial store records none)"
            )
        record["methods"][key] = {
            "hparams": hp,
            "summary": _summary(rec.steps),
            "steps": rec.steps,
            "best_epoch": run["best_epoch"],
            "val_accuracy": run["val_accuracy"],
            "test_accuracy": run["test_accuracy"],
        }
        print(f"[{task_name}] {key}: {len(rec.steps)} steps", file=sys.stderr, flush=True)
    write_json(out_file, record, overwrite=args.overwrite)
    print(table(record))
    print(f"wrote {out_file}", file=sys.stderr)
    return record


def table(record: dict[str, Any]) -> str:
    """Markdown: per method and binary weight, the mean flip fraction early and later."""
    e = record["early_steps"]
    lines = [
        f"| method | setting | weight | flips/step, steps 1-{e} | steps {e + 1}-{record['epochs']} | best val (epoch) |",
        "|---|---|---|---:|---:|---|",
    ]
    for key, m in record["methods"].items():
        hp = ", ".join(f"{k} {v:g}" for k, v in m["hparams"].items())
        for name, s in m["summary"].items():
            later = "" if s["later_mean"] is None else f"{s['later_mean']:.4f}"
            lines.append(
                f"| {key} | {hp} | {name} | {s['early_mean']:.4f} | {later} | "
                f"{m['val_accuracy']:.3f} ({m['best_epoch']}) |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
