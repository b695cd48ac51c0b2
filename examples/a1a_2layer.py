"""Paper experiment: a1a (Adult), 2-layer binary MLP on 3 selected features (hidden 5, batch 20).

The paper's D-Wave setting: the inputs are the three a1a features the reference code selects
(:data:`bnn.data.A1A_PAPER_FEATURES`), a hidden layer of 5 binary neurons and batch size 20, so
every ``binary_gradient`` problem has at most 5 spins. Columns: QP-SBGD with the
``binary_gradient`` model on ``neal`` and ``exact`` (the exact optimum of every problem), its
c = 0 ablation, QP-SBGD with the paper's **sign-matching** formulation
(:mod:`qsgd.sign_match`: one problem of ``fan_in + rows * (1 + K)`` spins per neuron, on a
random subsample of ``--sign-match-rows`` rows of the mini-batch), BinaryConnect, signSGD,
ProxQuant, Bop and full precision, under the fair protocol of :mod:`bnn.experiments` (step
sizes searched alike, the non-binary lr tied to them, grids extended at edges,
best-validation-epoch selection with early stopping, fixed threads), on a validation split,
with test accuracy on ``a1a.t``.

Only four distinct inputs occur (the features come in the pairs ``x, -x``), and in each of them
the majority class is ``<=50K`` in training and in test data: the best any classifier of these
features can do on ``a1a.t`` is the majority rate 0.7595 (``docs/experiments.md``). The
experiment can therefore only show whether a method reaches that ceiling.

``mock-dwave`` (the real Advantage graph, embedding and chains, simulated offline; seconds per
step) runs on a reduced protocol when asked for (``--backend mock-dwave``; ``--qpu-seeds``,
``--qpu-epochs``, ``--qpu-batches``) with the setting chosen by the ``neal`` search. The D-Wave
setting with sign matching and packed QPU calls is one command of its own::

    bnn train examples/configs/a1a_2layer_dwave.toml

Run::

    python examples/a1a_2layer.py --seeds 5 --epochs 12 --patience 4 --search-fraction 0.5 --threads 1 --jobs 1 --out results/a1a_2layer --overwrite
    python examples/a1a_2layer.py --smoke           # seconds; writes runs/a1a_2layer/a1a_2layer.*

Results go to ``--out`` (default ``runs/a1a_2layer``): ``a1a_2layer.{json,md,png}``, or with
``--diagnose`` ``a1a_2layer_diagnosis.json``, or with ``--audit-sign-match STEPS``
``a1a_2layer_sign_match_audit_<reads>reads_<decode>.json``. An existing one is refused before
any training unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from bnn.data import A1A_PAPER_FEATURES, get_dataset
from bnn.experiments import (
    Task,
    add_common_arguments,
    build_methods,
    check_outputs,
    command_line,
    fair_grids,
    parse_experiment_args,
    run_and_write,
    shorten_backend,
    shrink_tabular,
    usage_error,
    write_json,
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
            proxquant_reg_rate=[1e-2],
        )
    return fair_grids([0.003, 0.01, 0.03], [0.1, 1.0, 10.0])


def sign_match_methods(
    grids: dict[str, dict[str, list[float]]],
    backends: list[str],
    annealer: dict,
    rows: int | None,
    decode: str = "mismatch",
) -> list:
    """QP-SBGD with the sign-matching formulation on each backend (key ``qpsbgd_sm_<backend>``).

    It searches the same step sizes as every other method (``other_lr`` tied); it has no
    curvature. ``rows`` is the row subsample of every problem (None: the whole mini-batch).
    """
    fam = {k: v for k, v in grids.items() if k != "qpsbgd_c0"}
    fam["qpsbgd"] = {"lr": list(grids["qpsbgd"]["lr"])}
    sm = {"rows": rows, "decode": decode}
    options = {"formulation": "sign_match", "sign_match": sm}
    keys = [f"qpsbgd_{b}" for b in backends]
    methods = build_methods(
        fam, backends=backends, annealer=annealer, qpsbgd_options=options, include=keys
    )
    for m in methods:
        backend = m.key.removeprefix("qpsbgd_")
        m.key = f"qpsbgd_sm_{backend}"
        m.label = f"QP-SBGD sign-match ({backend})"
    return methods


#: The four inputs that occur (feature signs 000, 011, 100, 111: two pairs x, -x).
PATTERNS = ((-1.0, -1.0, -1.0), (-1.0, 1.0, 1.0), (1.0, -1.0, -1.0), (1.0, 1.0, 1.0))

#: ``--diagnose``: (label, optimizer, binary step size, Adam lr of the non-binary parameters,
#: QP-SBGD curvature). The first row is the earlier protocol's QP-SBGD (``other_lr`` fixed at
#: QPSBGD's default 1e-3); each method appears with that lr and with it tied to its step size.
DIAGNOSIS = (
    ("QP-SBGD lr=0.05 c=0.1, non-binary lr 1e-3 (earlier protocol)", "qpsbgd", 0.05, 1e-3, 0.1),
    ("QP-SBGD lr=0.05 c=0.1, non-binary lr tied (0.05)", "qpsbgd", 0.05, 0.05, 0.1),
    ("QP-SBGD lr=0.01 c=1, non-binary lr 1e-3", "qpsbgd", 0.01, 1e-3, 1.0),
    ("QP-SBGD lr=0.01 c=1, non-binary lr tied (0.01)", "qpsbgd", 0.01, 0.01, 1.0),
    ("signSGD lr=0.01, non-binary lr 1e-3", "signsgd", 0.01, 1e-3, None),
    ("signSGD lr=0.01, non-binary lr tied (0.01)", "signsgd", 0.01, 0.01, None),
    ("BinaryConnect lr=0.03, non-binary lr 1e-3", "binaryconnect", 0.03, 1e-3, None),
)


def class_rates(ds) -> list[dict]:
    """Rows and rate of the positive class per input pattern, in the training and test data."""
    out = []
    for pat in PATTERNS:
        row = {"pattern": "".join("1" if v > 0 else "0" for v in pat)}
        for split in ("train", "test"):
            x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
            hit = (x == torch.tensor(pat)).all(dim=1)
            row[f"{split}_rows"] = int(hit.sum())
            row[f"{split}_positive_rate"] = float(y[hit].float().mean()) if hit.any() else None
        out.append(row)
    return out


def diagnose(ds, seeds: int, epochs: int) -> list[dict]:
    """Why a method ends below the majority rate: per setting of :data:`DIAGNOSIS`, test accuracy
    after ``epochs`` epochs, how many seeds end with an **odd** network (``f(-x) = -f(x)`` on the
    two input pairs: it must then predict the minority class on one input of each pair, or
    tie), the mean batch-norm offset ``|beta - gamma * mu / sigma|`` of the hidden units (the
    only term that breaks the oddness: no layer has a bias) and the inputs predicted positive.
    QP-SBGD runs on ``exact`` (problems of 3 and 5 spins)."""
    from bnn.baselines import make_optimizer
    from bnn.training import fit, seed_everything
    from qsgd.binary import is_binary_param

    pats = torch.tensor(PATTERNS)
    rows = []
    for label, name, lr, other, curvature in DIAGNOSIS:
        accs, odd, offsets, positive = [], 0, [], []
        for seed in range(seeds):
            seed_everything(seed)
            model = BinaryMLP(ds.num_features, [5], 2)
            if name == "qpsbgd":
                opt = make_optimizer(
                    name,
                    model,
                    lr=lr,
                    curvature=curvature,
                    other_lr=other,
                    backend="exact",
                    seed=seed,
                )
            else:
                params = list(model.parameters())
                groups = [
                    {"params": [p for p in params if is_binary_param(p)]},
                    {"params": [p for p in params if not is_binary_param(p)], "lr": other},
                ]
                opt = make_optimizer(name, groups, lr=lr)
            fit(
                model,
                opt,
                ds,
                epochs=epochs,
                batch_size=20,
                seed=seed,
                progress=False,
                plots=False,
                handle_signals=False,
            )
            model.eval()
            with torch.no_grad():
                logits = model(pats)
                d = logits[:, 1] - logits[:, 0]
                bn = model.net[1]
                off = bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)
                accs.append(float((model(ds.x_test).argmax(1) == ds.y_test).float().mean()))
            odd += bool(torch.allclose(d[0], -d[3]) and torch.allclose(d[1], -d[2]))
            offsets.append(float(off.abs().mean()))
            positive.append([PATTERNS.index(p) for p in PATTERNS if d[PATTERNS.index(p)] > 0])
        mean = sum(accs) / len(accs)
        std = (sum((a - mean) ** 2 for a in accs) / max(len(accs) - 1, 1)) ** 0.5
        rows.append(
            {
                "setting": label,
                "test_accuracy_mean": mean,
                "test_accuracy_std": std,
                "odd_networks": odd,
                "seeds": seeds,
                "bn_offset_mean": sum(offsets) / len(offsets),
                "patterns_predicted_positive": [
                    ["000", "011", "100", "111"][i] for p in positive for i in p
                ],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _mean(records: list[dict], key: str) -> float:
    return sum(r[key] for r in records) / len(records)


def audit_sign_match(
    ds, annealer: dict, backend: str, steps: int, rows: int | None, decode: str = "mismatch"
) -> dict:
    """The annealer against the exact optimum on the sign-matching problems of real training.

    Trains QP-SBGD (sign matching, lr 0.01, seed 0) for ``steps`` mini-batches and reads the
    per-layer records: the weighted mismatch of the annealer's direction, of the exact optimum
    (enumerated, :func:`qsgd.sign_match.optimal_mismatch`) and of signSGD's ``sign(G^T X)``,
    and the fraction of steps whose direction is optimal."""
    from bnn.baselines import make_optimizer
    from bnn.training import fit, seed_everything
    from qsgd.config import AnnealerConfig

    seed_everything(0)
    model = BinaryMLP(ds.num_features, [5], 2)
    cfg = AnnealerConfig.from_dict({**annealer, "backend": backend})
    opt = make_optimizer(
        "qpsbgd",
        model,
        lr=0.01,
        other_lr=0.01,
        formulation="sign_match",
        sign_match={"rows": rows, "decode": decode},
        backend=cfg,
        seed=0,
    )
    records: list[dict] = []
    fit(
        model,
        opt,
        ds,
        epochs=1,
        batch_size=20,
        seed=0,
        max_batches_per_epoch=steps,
        progress=False,
        plots=False,
        handle_signals=False,
        callbacks=[lambda kind, rec: records.extend(opt.last_stats) if kind == "step" else None],
    )
    layers = {}
    for name in dict.fromkeys(r["layer"] for r in records):
        rs = [r for r in records if r["layer"] == name and not r["skipped"]]
        layers[name] = {
            "steps": len(rs),
            "variables": rs[0]["variables"],
            "mismatch_annealer": _mean(rs, "mismatch"),
            "mismatch_optimum": _mean(rs, "mismatch_optimum"),
            "mismatch_sign_grad": _mean(rs, "mismatch_sign_grad"),
            "steps_at_optimum": sum(r["mismatch"] <= r["mismatch_optimum"] + 1e-12 for r in rs)
            / len(rs),
        }
    return {
        "backend": backend,
        "annealer": annealer,
        "rows": rows,
        "decode": decode,
        "layers": layers,
    }


def audit_name(annealer: dict, decode: str) -> str:
    """The stem of ``--audit-sign-match``'s JSON (``decode``: ``mismatch`` or ``energy``).

    Example:
        >>> audit_name({"num_reads": 10}, "mismatch")
        'a1a_2layer_sign_match_audit_10reads_mismatch'
    """
    reads = annealer.get("num_reads")
    suffix = "_mismatch" if decode == "mismatch" else "_energy"
    return f"a1a_2layer_sign_match_audit_{reads}reads{suffix}"


def _write_json(out_dir: str, name: str, data: dict, *, overwrite: bool) -> None:
    """``data`` as ``OUT_DIR/NAME.json`` (:func:`bnn.experiments.write_json`: atomic, refused
    when it exists and ``overwrite`` is false; main checks first); names the file on stderr."""
    path = write_json(Path(out_dir) / f"{name}.json", data, overwrite=overwrite)
    print(f"wrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_backends=["neal", "exact"], default_out="runs/a1a_2layer")
    parser.add_argument(
        "--sign-match-backend",
        action="append",
        default=None,
        help="backend of a QP-SBGD sign-matching column (repeatable; default neal; 'none': no "
        "such column)",
    )
    parser.add_argument(
        "--sign-match-rows",
        type=int,
        default=8,
        help="mini-batch rows per sign-matching problem (0: all 20)",
    )
    parser.add_argument(
        "--sign-match-decode",
        choices=["energy", "mismatch"],
        default="mismatch",
        help="direction of the lowest-energy read, or of the read that mismatches least "
        "(qsgd.sign_match.DECODES)",
    )
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs of every run")
    parser.add_argument(
        "--audit-sign-match",
        type=int,
        default=None,
        metavar="STEPS",
        help="instead of the experiment: STEPS training steps of QP-SBGD sign matching on the "
        "first --backend, the annealer's directions against the exact optimum (JSON to "
        "OUT/a1a_2layer_sign_match_audit_<reads>reads.json)",
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="instead of the experiment: the class rates per input and the runs that show why a "
        "method ends below the majority rate (--seeds seeds x --epochs epochs each; JSON to "
        "OUT/a1a_2layer_diagnosis.json)",
    )
    parser.add_argument("--data-root", default=None, help="folder with a1a and a1a.t")
    parser.add_argument("--qpu-seeds", type=int, default=2, help="seeds of QP-SBGD (mock-dwave)")
    parser.add_argument("--qpu-epochs", type=int, default=1, help="epochs of QP-SBGD (mock-dwave)")
    parser.add_argument(
        "--qpu-batches", type=int, default=20, help="batches per epoch of QP-SBGD (mock-dwave)"
    )
    args, backends, annealer = parse_experiment_args(
        parser, argv, {"num_reads": 10, "num_sweeps": 100}
    )
    if args.audit_sign_match is not None and args.audit_sign_match < 1:
        usage_error(f"--audit-sign-match must be >= 1 (got {args.audit_sign_match})")
    if args.audit_sign_match is not None:
        check_outputs(
            args.out,
            [audit_name(annealer, args.sign_match_decode)],
            args.overwrite,
            suffixes=["json"],
        )
    elif args.diagnose:
        check_outputs(args.out, ["a1a_2layer_diagnosis"], args.overwrite, suffixes=["json"])
    else:
        check_outputs(args.out, ["a1a_2layer"], args.overwrite)
    kwargs = {"root": args.data_root} if args.data_root else {}
    ds = get_dataset("a1a", features=list(A1A_PAPER_FEATURES), val_fraction=0.1, seed=0, **kwargs)
    if args.smoke:
        ds = shrink_tabular(ds, train=60, val=64, test=256)
    epochs = 1 if args.smoke else args.epochs
    if args.audit_sign_match is not None:
        out = audit_sign_match(
            ds,
            annealer,
            backends[0],
            args.audit_sign_match,
            args.sign_match_rows or None,
            args.sign_match_decode,
        )
        out["command"] = command_line("examples/a1a_2layer.py", argv)
        print(json.dumps(out["layers"], indent=1))
        _write_json(
            args.out, audit_name(annealer, args.sign_match_decode), out, overwrite=args.overwrite
        )
        return out
    if args.diagnose:
        out = {
            "command": command_line("examples/a1a_2layer.py", argv),
            "class_rates": class_rates(ds),
            "majority_rate_test": float((ds.y_test == 0).float().mean()),
            "runs": diagnose(ds, 1 if args.smoke else args.seeds, epochs),
        }
        _write_json(args.out, "a1a_2layer_diagnosis", out, overwrite=args.overwrite)
        return out
    task = Task(
        "a1a_2layer",
        ds,
        lambda d, binary: BinaryMLP(d.num_features, [5], 2, binary=binary),
        epochs=epochs,
        batch_size=20,
        search_fraction=args.search_fraction or 1.0,
        patience=args.patience if args.patience is not None else (None if args.smoke else 5),
        max_extensions=0 if args.smoke else args.max_extensions,
        search_seeds=args.search_seeds,
    )
    include = args.methods.split(",") if args.methods else None
    sm_backends = args.sign_match_backend or ["neal"]
    sm_backends = [] if sm_backends == ["none"] else sm_backends
    if args.sign_match_rows < 0:
        usage_error(f"--sign-match-rows must be >= 0 (got {args.sign_match_rows})")
    rows = 4 if args.smoke else (args.sign_match_rows or None)
    grid = grids(args.smoke)
    methods = build_methods(grid, backends=backends, annealer=annealer)
    if sm_backends:
        sm = sign_match_methods(grid, sm_backends, annealer, rows, args.sign_match_decode)
        at = max((i + 1 for i, m in enumerate(methods) if m.key.startswith("qpsbgd")), default=0)
        methods[at:at] = sm
    if include is not None:
        unknown = [k for k in include if k not in {m.key for m in methods}]
        if unknown:
            known = ", ".join(m.key for m in methods)
            usage_error(f"unknown method {unknown[0]!r}; methods of this run: {known}")
        methods = [m for m in methods if m.key in include]
    if not args.smoke:
        shorten_backend(
            methods,
            "mock-dwave",
            seeds=min(args.qpu_seeds, args.seeds),
            epochs=args.qpu_epochs,
            max_batches=args.qpu_batches,
            search_from="neal",
        )
    seeds = list(range(1 if args.smoke else args.seeds))
    return run_and_write(
        task,
        methods,
        args,
        seeds=seeds,
        title=f"a1a, 2-layer binary MLP (3 features, hidden 5, batch 20), {len(seeds)} seeds",
        stem="a1a_2layer",
        extra={
            "command": command_line("examples/a1a_2layer.py", argv),
            "annealer": annealer,
            "sign_match_rows": rows,
            "smoke": args.smoke,
        },
    )


if __name__ == "__main__":
    main()
