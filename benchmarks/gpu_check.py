"""GPU figures next to CPU ones: the ``batched`` annealer's torch/CUDA path and the Gram product.

One prepared script for a machine with CUDA (a few minutes at most). Without CUDA it prints
one line saying so, emits ``{"cuda": false, ...}`` and exits with status 0.

1. **Annealer**: the layer problems of ``bench_annealers.py`` (128 problems of 128 spins,
   rank-16 factor, 10 reads, 100 sweeps), a larger batch of them (1,024 problems), and the
   wide case (batch 128, fan-in 512: 64 problems of 512 spins, 1 read, 100 sweeps), each
   solved by ``BatchedAnnealer.sample_batch`` with ``device="cpu"`` (numba, all free cores)
   and ``device="cuda"`` (torch, float32). Warm-up calls excluded; times are the best of
   ``--repeats``; energies are the median best energy per problem (recomputed in float64).
2. **Gram**: ``qkernels.kernel.gram_from_states`` (``|A B^H|^2``, the product every Gram in
   ``qkernels`` reduces to) on random normalised statevectors of 8 and 12 qubits for N = 1,000
   and 4,000, on the CPU (torch, all threads) and on CUDA (complex128), with the largest
   absolute difference between the two. (``EmbeddingKernel`` simulates its statevectors with
   PennyLane on the CPU; the Gram product is the part that runs on any torch device.)

Run: ``python benchmarks/gpu_check.py [--repeats 3] [--quick]``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine  # noqa: E402


def _best(fn, repeats: int, sync) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def annealer_rows(repeats: int, quick: bool, sync, target: str) -> list[dict]:
    from bench_annealers import WIDE, build_problems

    from qsgd.ising import IsingBatch
    from qsgd.samplers.batched import BatchedAnnealer

    layer, _ = build_problems(None, 0, None)
    cases = [("layer 128x128, B=16", layer, 10, 100)]
    if not quick:
        big = IsingBatch(
            np.tile(layer.h, (8, 1)),
            layer.J,
            np.tile(layer.offset, 8),
            layer.factor,
            layer.factor_scale,
        )
        cases.append(("1024 problems, B=16", big, 10, 100))
    wide, _ = build_problems(None, 0, None, WIDE["batch"], WIDE["fan_in"], WIDE["fan_out"])
    cases.append(("wide B=128, n=512", wide, WIDE["num_reads"], WIDE["num_sweeps"]))
    sampler = BatchedAnnealer()
    rows = []
    for name, batch, reads, sweeps in cases:
        row = {"case": name, "m": batch.num_problems, "n": batch.num_variables}
        row.update(rank=int(batch.factor.shape[0]), num_reads=reads, num_sweeps=sweeps)
        for device in ("cpu", target):
            kw = dict(num_reads=reads, num_sweeps=sweeps, device=device)
            sampler.sample_batch(batch.subset(slice(0, 2)), seed=0, **{**kw, "num_sweeps": 2})
            t, res = _best(
                lambda kw=kw, b=batch: sampler.sample_batch(b, seed=0, **kw), repeats, sync
            )
            key = "cpu" if device == "cpu" else "cuda"
            row[f"{key}_s"] = round(t, 4)
            row[f"{key}_median_best_energy"] = float(np.median(res.best_energy))
            row[f"{key}_path"] = res.info["path"]
        row["gpu_speedup"] = round(row["cpu_s"] / row["cuda_s"], 2)
        rows.append(row)
        print(
            f"annealer {name:>22}: cpu {row['cpu_s']:8.4f} s  cuda {row['cuda_s']:8.4f} s  "
            f"cpu/cuda {row['gpu_speedup']:6.2f}  median best E cpu {row['cpu_median_best_energy']:.6g} "
            f"cuda {row['cuda_median_best_energy']:.6g}",
            flush=True,
        )
    return rows


def gram_rows(repeats: int, quick: bool, sync, target: str) -> list[dict]:
    import torch

    from qkernels.kernel import gram_from_states

    rows = []
    sizes = [(8, 1000), (12, 1000)] if quick else [(8, 1000), (8, 4000), (12, 1000), (12, 4000)]
    gen = torch.Generator().manual_seed(0)
    for qubits, N in sizes:
        dim = 2**qubits
        re = torch.randn((N, dim), generator=gen, dtype=torch.float64)
        im = torch.randn((N, dim), generator=gen, dtype=torch.float64)
        states = torch.complex(re, im)
        states = states / states.abs().square().sum(dim=1, keepdim=True).sqrt()
        t_cpu, k_cpu = _best(lambda s=states: gram_from_states(s, s), repeats, lambda: None)
        gpu = states.to("cpu" if target == "torch-cpu" else target)
        gram_from_states(gpu[:2], gpu[:2])  # warm-up (cuBLAS handles)
        t_gpu, k_gpu = _best(lambda s=gpu: gram_from_states(s, s), repeats, sync)
        diff = float((k_gpu.cpu() - k_cpu).abs().max())
        row = {"qubits": qubits, "N": N, "cpu_s": round(t_cpu, 4), "cuda_s": round(t_gpu, 5)}
        row.update(gpu_speedup=round(t_cpu / t_gpu, 1), max_abs_diff=diff)
        rows.append(row)
        print(
            f"gram {qubits:2d} qubits N={N:5d}: cpu {t_cpu:8.4f} s  cuda {t_gpu:8.5f} s  "
            f"cpu/cuda {row['gpu_speedup']:7.1f}  max |diff| {diff:.2e}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="best of (default 3)")
    p.add_argument("--quick", action="store_true", help="fewer cases")
    p.add_argument(
        "--device",
        default="cuda",
        help="cuda or cuda:N; torch-cpu runs the same code on the CPU (a dry run of the script)",
    )
    args = p.parse_args(argv)
    import torch

    record: dict = {"bench": "gpu_check", **machine(), "torch": torch.__version__}
    if args.device != "torch-cpu" and not torch.cuda.is_available():
        print(
            "CUDA is not available (torch.cuda.is_available() is False): no GPU figures measured; "
            "run `python benchmarks/gpu_check.py` on a machine with CUDA"
        )
        record["cuda"] = False
        emit(record)
        return record
    dry = args.device == "torch-cpu"
    gpu = "none (dry run on the CPU)" if dry else torch.cuda.get_device_name(args.device)
    record.update(cuda=not dry, device=args.device, gpu=gpu, torch_threads=torch.get_num_threads())
    print(f"GPU: {gpu}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")
    sync = (lambda: None) if dry else torch.cuda.synchronize
    record["annealer"] = annealer_rows(args.repeats, args.quick, sync, args.device)
    record["gram"] = gram_rows(args.repeats, args.quick, sync, args.device)
    emit(record)
    return record


if __name__ == "__main__":
    main()
