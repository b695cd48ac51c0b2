"""Benchmark: per-neuron problems per QPU call on a Pegasus P16 mock, and chain breaks.

For fan-in ``n`` in 16, 32, 64, 128: how many disjoint clique embeddings of ``K_n`` fit on
``MockDWaveSampler(topology_type="pegasus", topology_shape=[16])`` (5640 qubits), found by
:func:`qsgd.samplers.packing.pack_clique_embeddings`; their longest chain and the qubits used;
and the QPU calls per training step for a layer of 128 neurons and for a 10-layer, 128-wide MLP
(one call per neuron without packing, ``ceil(128 / k)`` per layer with ``k`` per call).

Quality: for each fan-in, a batch of layer problems (``qsgd.qubo.layer_ising`` with ±1 inputs,
batch 16) is solved on the ``mock-dwave`` backend (simulated annealing on the embedded problem)
once with one problem per call and once packed; reported are the mean chain-break fractions
and the median best-energy gap (packed - single). Both paths use the same chain strength
(uniform torque compensation of the shared couplings) and the same number of reads and sweeps.

Training steps (issue 12): one QP-SBGD step (``--steps``) of the a1a 2-layer network (MLP
3-5-2) and the a1a 10-layer network (MLP 123-128x9-2, ``max_block_vars = 32``: 128 problems of
32 spins per block) on the Pegasus P16 mock, with one QPU call per problem (``mock-dwave``) and
packed + asynchronous (``mock-dwave-packed``). Reported per step: QPU calls, problems per call,
sequential round trips (waits that cannot overlap: one per problem single, one per batch
packed), wall time on the mock, mean chain-break fraction and mean best energy; the single path
is run with two seeds to give the seed-to-seed spread of the energy. The mock answers at once,
so its wall time shows the classical cost, not a QPU's latency; on a QPU each round trip adds
the latency (queue, programming, readout).

Run: ``python benchmarks/bench_packing.py [--quick]``; the last JSON line carries
``a1a_10layer.fewer_calls`` and ``a1a_2layer.fewer_calls`` (single calls / packed calls per step).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, emit, machine  # noqa: E402

from qsgd.ising import IsingBatch  # noqa: E402
from qsgd.qubo import layer_ising  # noqa: E402
from qsgd.samplers import get_sampler, solve_batch  # noqa: E402
from qsgd.samplers.packing import PackedQPUSampler, calls_per_layer  # noqa: E402

FAN_INS = (16, 32, 64, 128)
FAN_OUT, LAYERS, BATCH = 128, 10, 16


def layer_problems(n: int, m: int, seed: int) -> IsingBatch:
    """``m`` per-neuron problems of fan-in ``n`` (batch-16 ±1 inputs, Gaussian gradients)."""
    rng = np.random.default_rng(seed)
    X = rng.choice([-1.0, 1.0], size=(BATCH, n))
    G = rng.standard_normal((BATCH, m)) / BATCH
    g_rms = np.sqrt(np.mean((G.T @ X) ** 2))
    h_rms = np.sqrt(np.mean((X.T @ X / BATCH) ** 2) * n)
    return layer_ising(X, G, eta=float(g_rms / h_rms))


NETWORKS = {
    "a1a_2layer": ("a1a_2layer.toml", None),
    "a1a_10layer": ("a1a_10layer.toml", 32),
}


def _step_figures(cfg_overrides: list[str], config: str, steps: int) -> dict:
    """Run ``steps`` QP-SBGD steps of ``config`` with the overrides; sum the QPU figures."""
    import torch

    from bnn.config import RunConfig
    from bnn.training import _Data, build_dataset, build_model, build_optimizer, seed_everything

    cfg = RunConfig.from_file(REPO_ROOT / "examples" / "configs" / config, cfg_overrides)
    torch.set_num_threads(1)
    seed_everything(cfg.train.seed)
    dataset = build_dataset(cfg)
    model = build_model(cfg, dataset)
    opt = build_optimizer(cfg, model)
    data = _Data(dataset)
    batches = data.batches(cfg.train.seed, 0, cfg.train.batch_size, steps)
    out = {
        "qpu_calls": 0,
        "problems": 0,
        "round_trips": 0,
        "wall": 0.0,
        "access": 0.0,
        "cbf": [],
        "energy": [],
    }
    for b in batches[:steps]:

        def closure(index=b):
            opt.zero_grad()
            logits, y = data.forward_train(model, index)
            loss = torch.nn.functional.cross_entropy(logits, y)
            loss.backward()
            return loss

        t = time.perf_counter()
        opt.step(closure)
        out["wall"] += time.perf_counter() - t
        for rec in opt.last_stats:
            if rec["skipped"]:
                continue
            blocks = math.ceil(rec["variables"] / rec["block_vars"]) if rec["block_vars"] else 1
            out["qpu_calls"] += rec["qpu_calls"]
            out["access"] += rec["qpu_access_time"]
            out["problems"] += rec["problems"] * blocks
            packed = cfg.annealer.pack
            out["round_trips"] += blocks if packed else rec["problems"] * blocks
            out["cbf"].append(rec["chain_break_fraction"])
            out["energy"].append(rec["best_energy"])
    n = max(len(batches[:steps]), 1)
    return {
        "calls_per_step": out["qpu_calls"] / n,
        "problems_per_step": out["problems"] / n,
        "problems_per_call": out["problems"] / max(out["qpu_calls"], 1),
        "round_trips_per_step": out["round_trips"] / n,
        "wall_per_step": round(out["wall"] / n, 3),
        "qpu_access_time_per_step": round(out["access"] / n, 4),
        "chain_break_fraction": round(float(np.mean(out["cbf"])), 5),
        "mean_best_energy": float(np.mean(out["energy"])),
    }


def train_steps(net: str, args: argparse.Namespace) -> dict:
    """Single calls (two seeds) vs packed + async for one network; prints one line per mode."""
    config, block = NETWORKS[net]
    base = [
        "annealer.backend=mock-dwave",
        f"annealer.num_reads={args.num_reads}",
        f'annealer.options={{substitute="neal", num_sweeps={args.num_sweeps}, '
        "topology_shape=[16]}",
    ]
    if block:
        base.append(f"annealer.max_block_vars={block}")
    runs = {}
    modes = [("single", 0, False), ("packed", 0, True)]
    if not args.quick:
        modes.insert(1, ("single_seed1", 1, False))
    for label, seed, pack in modes:
        overrides = [*base, f"annealer.seed={seed}", f"annealer.pack={str(pack).lower()}"]
        runs[label] = _step_figures(overrides, config, args.steps)
        r = runs[label]
        print(
            f"{net} {label:>12}: {r['calls_per_step']:.0f} QPU calls/step "
            f"({r['problems_per_call']:.1f} problems/call, {r['round_trips_per_step']:.0f} "
            f"sequential round trips), wall {r['wall_per_step']:.2f} s/step on the mock, "
            f"QPU access {r['qpu_access_time_per_step']:.3f} s/step (mock timing model), "
            f"chain breaks {r['chain_break_fraction']:.4f}, mean best energy "
            f"{r['mean_best_energy']:.5g}",
            flush=True,
        )
    single, packed = runs["single"], runs["packed"]
    spread = (
        abs(runs["single_seed1"]["mean_best_energy"] - single["mean_best_energy"])
        if "single_seed1" in runs
        else None
    )
    return {
        "fewer_calls": round(single["calls_per_step"] / packed["calls_per_step"], 2),
        "fewer_round_trips": round(
            single["round_trips_per_step"] / packed["round_trips_per_step"], 2
        ),
        "energy_gap_packed_minus_single": packed["mean_best_energy"] - single["mean_best_energy"],
        "energy_seed_spread_single": spread,
        # no higher than the single path's, up to its seed-to-seed spread (when measured)
        "chain_breaks_no_higher": packed["chain_break_fraction"]
        <= max(r["chain_break_fraction"] for k, r in runs.items() if k.startswith("single"))
        + 1e-12,
        "steps": args.steps,
        **{f"{k}": v for k, v in runs.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="quality check at fan-in 32 only (< 1 min)"
    )
    ap.add_argument("--problems", type=int, default=None, help="problems per quality check")
    ap.add_argument("--num-reads", type=int, default=10)
    ap.add_argument("--num-sweeps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1, help="training steps per network and mode")
    args = ap.parse_args()
    m = args.problems or (8 if args.quick else 24)

    t0 = time.perf_counter()
    qpu = get_sampler(
        "mock-dwave",
        topology_shape=[16],
        substitute="neal",
        num_sweeps=args.num_sweeps,
    )
    graph = qpu.child.to_networkx_graph()
    print(f"Pegasus P16 mock: {graph.number_of_nodes()} qubits ({time.perf_counter() - t0:.1f} s)")
    packed = PackedQPUSampler(qpu)
    rows = {}
    for n in FAN_INS:
        t = time.perf_counter()
        embs = packed.embeddings(n)
        k = len(embs)
        row = {
            "problems_per_call": k,
            "max_chain_length": max(len(c) for e in embs for c in e.values()) if k else None,
            "qubits_used": sum(len(c) for e in embs for c in e.values()),
            "calls_per_layer_single": FAN_OUT,
            "calls_per_layer_packed": calls_per_layer(FAN_OUT, k) if k else None,
            "calls_per_step_single": LAYERS * FAN_OUT,
            "calls_per_step_packed": LAYERS * calls_per_layer(FAN_OUT, k) if k else None,
            "pack_seconds": round(time.perf_counter() - t, 2),
        }
        row["call_reduction"] = (
            round(row["calls_per_step_single"] / row["calls_per_step_packed"], 2) if k else None
        )
        rows[n] = row
        print(
            f"fan-in {n:>3}: {k:>3} problems per call (chains <= {row['max_chain_length']}, "
            f"{row['qubits_used']} qubits); calls per 128-neuron layer {FAN_OUT} -> "
            f"{row['calls_per_layer_packed']}, per 10-layer step {LAYERS * FAN_OUT} -> "
            f"{row['calls_per_step_packed']} ({row['call_reduction']}x fewer)",
            flush=True,
        )

    for n in (32,) if args.quick else FAN_INS:
        if not rows[n]["problems_per_call"]:
            continue
        b = layer_problems(n, m, args.seed + n)
        t = time.perf_counter()
        single = solve_batch(qpu, b, seed=1, num_reads=args.num_reads)
        t_single = time.perf_counter() - t
        t = time.perf_counter()
        pk = solve_batch(packed, b, seed=1, num_reads=args.num_reads)
        t_packed = time.perf_counter() - t
        gap = float(np.median(pk.best_energy - single.best_energy))
        scale = float(np.median(np.abs(single.best_energy)))
        rows[n].update(
            quality_problems=m,
            calls_single=m,
            calls_packed=pk.info["calls"],
            chain_break_single=round(single.info["chain_break_fraction"], 5),
            chain_break_packed=round(pk.info["chain_break_fraction"], 5),
            median_energy_gap=round(gap, 5),
            median_rel_energy_gap=round(gap / scale, 5) if scale else None,
            mock_seconds_single=round(t_single, 2),
            mock_seconds_packed=round(t_packed, 2),
        )
        print(
            f"fan-in {n:>3}, {m} problems: chain breaks single {single.info['chain_break_fraction']:.4f} "
            f"vs packed {pk.info['chain_break_fraction']:.4f} ({m} calls -> {pk.info['calls']}); "
            f"median best-energy gap packed - single {gap:+.4f} (|E| ~ {scale:.3f})",
            flush=True,
        )
    nets = {}
    for net in ("a1a_2layer", "a1a_10layer"):
        nets[net] = train_steps(net, args)
    r32 = rows[32]
    emit(
        {
            "bench": "packing",
            "topology": "pegasus-16",
            "problems_per_call": {str(n): rows[n]["problems_per_call"] for n in FAN_INS},
            "call_reduction_per_step": {str(n): rows[n]["call_reduction"] for n in FAN_INS},
            "fan_in_32_target_met": bool(
                r32["problems_per_call"] >= 4
                and r32.get("chain_break_packed", math.inf) <= r32.get("chain_break_single", -1)
            ),
            "chain_break_single_32": r32.get("chain_break_single"),
            "chain_break_packed_32": r32.get("chain_break_packed"),
            "details": {str(n): rows[n] for n in FAN_INS},
            **nets,
            "quick": args.quick,
            **machine(),
        }
    )


if __name__ == "__main__":
    main()
