"""What closes WDNO's gap to the FNO on Burgers simulation: short training runs of variants of
the WDNO recipe, scored on a validation set (never the test set of `benchmarks/pde.py`).

Data: `generate_burgers` at nx = 64, nt = 16, t in [0, 1], nu = 0.01: 1024 training trajectories
(seed 0, the shipped model's data) and 128 validation trajectories (seed 2). Each variant: the
WDNO of the shipped model (16 channels, multipliers (1, 2), bior2.4) trained `--steps` steps
(batch 32, AdamW lr 1e-3, EMA 0.995, seed 0) with one change; the exported EMA weights sample
the validation trajectories with DDIM (eta 1); relative L2 over t >= 1 with a 95% bootstrap
interval over trajectories, and the paired difference to the baseline (same trajectories). The
baseline is also sampled with 5, 10 and 50 DDIM steps. Trained runs are kept in `--runs` and
reused by a second run (which reports the training CPU seconds stored beside each).

Run: `nox -s bench -- pde_tune` (or `OMP_NUM_THREADS=1 python benchmarks/run.py pde_tune
[--steps 1500] [--runs runs/pde/tune] [--models FOLDER ...]`); writes
docs/benchmarks/pde-tuning.{md,json}. `--models` scores finished WDNO models on the same
validation set, each paired with the first (how the shipped model's recipe was chosen).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from polydiff.core import load_method
from polydiff.core.io import atomic_write_json, atomic_write_text
from polydiff.core.metrics import bootstrap_mean
from polydiff.pde.data import BurgersConfig, generate_burgers
from polydiff.pde.metrics import relative_l2_per_sample
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
    record = runs / f"{name}-{steps}" / "train_cpu.json"
    start = time.process_time()
    train_method(method, data, runs / f"{name}-{steps}", config, progress_bar=False)
    spent = time.process_time() - start
    if record.is_file():  # a finished run reused: the CPU seconds its training took
        spent = json.loads(record.read_text())["cpu_s"]
    atomic_write_json(record, {"cpu_s": spent})
    return method, spent


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pde_tune")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "pde" / "tune")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--models", nargs="*", type=Path, default=[],
        help="trained WDNO folders also scored (10 DDIM steps), each paired with the first",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train = generate_burgers(1024, DATA, seed=TRAIN_SEED)
    val = generate_burgers(128, DATA, seed=VALIDATION_SEED)
    truth = torch.as_tensor(val.u)
    rows, errors = {}, {}
    for name in args.variants:
        method, cpu = train_variant(name, args.steps, train, args.runs)
        for steps in (5, 10, 50) if name == "baseline" else (10,):
            start = time.perf_counter()
            pred = torch.as_tensor(predict(method, val.u[:, 0], val.f, steps=steps, seed=0))
            seconds = time.perf_counter() - start
            key = name if steps == 10 else f"{name}_ddim{steps}"
            errors[key] = relative_l2_per_sample(pred, truth, from_time=1)
            mean, lo, hi = bootstrap_mean(errors[key])
            rows[key] = {
                "relative_l2": mean,
                "ci95": [lo, hi],
                "ddim_steps": steps,
                "train_cpu_s": cpu,
                "sample_s_per_trajectory": seconds / len(pred),
            }
            if "baseline" in errors and key != "baseline":  # paired over the same trajectories
                rows[key]["minus_baseline"] = list(bootstrap_mean(errors[key] - errors["baseline"]))
            print(key, json.dumps(rows[key]), flush=True)
    first = None
    for folder in args.models:
        model = load_method(folder)
        pred = torch.as_tensor(predict(model, val.u[:, 0], val.f, steps=10, seed=0))
        key = f"model {folder.parent.name}/{folder.name}"
        errors[key] = relative_l2_per_sample(pred, truth, from_time=1)
        mean, lo, hi = bootstrap_mean(errors[key])
        rows[key] = {"relative_l2": mean, "ci95": [lo, hi], "ddim_steps": 10}
        if first is None:
            first = key
        else:
            rows[key]["minus_first_model"] = list(bootstrap_mean(errors[key] - errors[first]))
        print(key, json.dumps(rows[key]), flush=True)
    command = f"python benchmarks/run.py pde_tune --steps {args.steps}"
    if args.models:
        command += " --models " + " ".join(f"<runs>/{f.parent.name}/{f.name}" for f in args.models)
    meta = {"command": command, "train": "1024 trajectories, seed 0",
            "validation": "128 trajectories, seed 2", "grid": "nx 64, nt 16, t in [0, 1]",
            "training": f"{args.steps} steps, batch 32, AdamW lr 1e-3, EMA 0.995, seed 0",
            "machine": "2 shared CPU cores, no GPU, one thread"}  # fmt: skip
    # a variant beats the baseline when the paired interval of its difference lies below 0
    goals = {
        f"{k}_beats_baseline": v["minus_baseline"][2] < 0
        for k, v in rows.items()
        if "minus_baseline" in v and v["ddim_steps"] == 10
    }
    out = ROOT / "docs" / "benchmarks"
    atomic_write_json(out / "pde-tuning.json", {**meta, "results": rows, "goals": goals})
    lines = ["# WDNO tuning on Burgers simulation (validation set)", "",
             f"Command: `{command}`; " + "; ".join(f"{k}: {v}" for k, v in meta.items()
                                                  if k != "command") + ".", "",
             "Relative L2 over t >= 1 on the validation trajectories, 95% bootstrap interval "
             "over trajectories; minus baseline: the paired per-trajectory difference to the "
             "baseline at 10 DDIM steps (a variant wins when its interval lies below 0); "
             "DDIM eta 1.", "",
             "| variant | DDIM steps | relative L2 (95% CI) | minus baseline (95% CI) | "
             "train CPU s | sample s / traj. |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for key, r in rows.items():
        diff = r.get("minus_baseline", r.get("minus_first_model"))
        diff = f"{diff[0]:+.4f} ({diff[1]:+.4f} to {diff[2]:+.4f})" if diff else ""
        if "minus_first_model" in r:
            diff += " vs the first model"
        cpu = f"{r['train_cpu_s']:.0f}" if "train_cpu_s" in r else ""
        seconds = f"{r['sample_s_per_trajectory']:.4f}" if "sample_s_per_trajectory" in r else ""
        lines.append(
            f"| {key} | {r['ddim_steps']} | {r['relative_l2']:.4f} "
            f"({r['ci95'][0]:.4f}-{r['ci95'][1]:.4f}) | {diff} | {cpu} | {seconds} |"
        )
    atomic_write_text(out / "pde-tuning.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
