"""What closes WDNO's gap to the FNO on Burgers simulation: short training runs of variants of
the WDNO recipe, scored on a validation set (never the test set of `benchmarks/pde.py`).

Data: `generate_burgers` at nx = 64, nt = 16, t in [0, 1], nu = 0.01: 1024 training trajectories
(seed 0, the shipped model's data) and 128 validation trajectories (seed 2). Each variant: the
WDNO of the shipped model (16 channels, multipliers (1, 2), bior2.4) trained `--steps` steps
(batch 32, AdamW lr 1e-3, EMA 0.995, seed 0) with one change; the exported EMA weights sample
the validation trajectories with DDIM (eta 1); relative L2 over t >= 1 with a 95% bootstrap
interval over trajectories. The baseline is also sampled with 5, 10 and 50 DDIM steps.

Run: `nox -s bench -- pde_tune` (or `OMP_NUM_THREADS=1 python benchmarks/run.py pde_tune
[--steps 1500] [--runs runs/pde/tune]`); writes docs/benchmarks/pde-tuning.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from polydiff.core.io import atomic_write_json, atomic_write_text
from polydiff.pde.data import BurgersConfig, generate_burgers
from polydiff.pde.metrics import bootstrap_mean, relative_l2_per_sample
from polydiff.pde.pipeline import predict
from polydiff.pde.train import TrainConfig, train_method
from polydiff.pde.wdno import WDNO, WDNOConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = BurgersConfig(nx=64, nt=16, t_end=1.0)
TRAIN_SEED, VALIDATION_SEED = 0, 2
BASE_MODEL = {"nx": 64, "nt": 16, "channels": 16, "channel_mult": (1, 2)}
# variant -> (WDNOConfig changes, TrainConfig changes)
VARIANTS = {
    "baseline": ({}, {}),
    "cosine_lr": ({}, {"lr_schedule": "cosine"}),
    "energy_weight": ({"loss_weight": "energy"}, {}),
    "two_levels": ({"levels": 2}, {}),
    "high_noise_times": ({"train_times": "high"}, {}),
}


def train_variant(name: str, steps: int, data, runs: Path) -> tuple[WDNO, float]:
    model_changes, train_changes = VARIANTS[name]
    torch.manual_seed(0)
    method = WDNO(WDNOConfig(**{**BASE_MODEL, **model_changes}))
    config = TrainConfig(max_steps=steps, batch_size=32, lr=1e-3, **train_changes)
    start = time.process_time()
    train_method(method, data, runs / f"{name}-{steps}", config, progress_bar=False)
    return method, time.process_time() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pde_tune")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "pde" / "tune")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train = generate_burgers(1024, DATA, seed=TRAIN_SEED)
    val = generate_burgers(128, DATA, seed=VALIDATION_SEED)
    truth = torch.as_tensor(val.u)
    rows = {}
    for name in args.variants:
        method, cpu = train_variant(name, args.steps, train, args.runs)
        for steps in (5, 10, 50) if name == "baseline" else (10,):
            start = time.perf_counter()
            pred = torch.as_tensor(predict(method, val.u[:, 0], val.f, steps=steps, seed=0))
            seconds = time.perf_counter() - start
            err = relative_l2_per_sample(pred, truth, from_time=1)
            mean, lo, hi = bootstrap_mean(err)
            key = name if steps == 10 else f"{name}_ddim{steps}"
            rows[key] = {
                "relative_l2": mean,
                "ci95": [lo, hi],
                "ddim_steps": steps,
                "train_cpu_s": cpu,
                "sample_s_per_trajectory": seconds / len(pred),
            }
            print(key, json.dumps(rows[key]), flush=True)
    command = f"python benchmarks/run.py pde_tune --steps {args.steps}"
    meta = {"command": command, "train": "1024 trajectories, seed 0",
            "validation": "128 trajectories, seed 2", "grid": "nx 64, nt 16, t in [0, 1]",
            "training": f"{args.steps} steps, batch 32, AdamW lr 1e-3, EMA 0.995, seed 0",
            "machine": "2 shared CPU cores, no GPU, one thread"}  # fmt: skip
    base = rows["baseline"]["relative_l2"] if "baseline" in rows else None
    goals = {f"{k}_beats_baseline": v["relative_l2"] < base for k, v in rows.items()
             if base is not None and k != "baseline" and v["ddim_steps"] == 10}  # fmt: skip
    out = ROOT / "docs" / "benchmarks"
    atomic_write_json(out / "pde-tuning.json", {**meta, "results": rows, "goals": goals})
    lines = ["# WDNO tuning on Burgers simulation (validation set)", "",
             f"Command: `{command}`; " + "; ".join(f"{k}: {v}" for k, v in meta.items()
                                                  if k != "command") + ".", "",
             "Relative L2 over t >= 1 on the validation trajectories, 95% bootstrap interval "
             "over trajectories; DDIM eta 1.", "",
             "| variant | DDIM steps | relative L2 | 95% CI | train CPU s | sample s / traj. |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for key, r in rows.items():
        lines.append(
            f"| {key} | {r['ddim_steps']} | {r['relative_l2']:.4f} | "
            f"{r['ci95'][0]:.4f}-{r['ci95'][1]:.4f} | {r['train_cpu_s']:.0f} | "
            f"{r['sample_s_per_trajectory']:.4f} |"
        )
    atomic_write_text(out / "pde-tuning.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
