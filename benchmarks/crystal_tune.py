"""CrysBFN tuning on validation data only (perov-5 `val`): training recipe and sampler options.

Tuning uses a model of the shipped `crysbfn-perov5` recipe trained on the first 3287 rows of
perov-5 `val.csv` and scores the last 500 rows (held out; the test split is never read).
Training goes through `polydiff.crystal.workflow.train` exactly as `polydiff crystal train
<val.csv> data.limit=3287 data.max_atoms=5 model.hidden=128 model.layers=3 +model.n_freq=32
train.batch_size=256 train.ema_warmup=false train.checkpoint_every=500` does (CSPNet hidden 128,
3 layers, 32 frequencies; AdamW 1e-3, batch 256, gradient clipping 1.0, EMA 0.995 without
warm-up, seed 0) in `--models/<variant>/train`, resuming there, with an export of the EMA
weights at every step count of `--save-at` (`--models/<variant>-<steps>`; an export found is
reused, not retrained). Loss variants: `elbo` (CrysBFN's N-step loss as published),
`inv_elbo` (its error up to a global shift per crystal: the shipped default), `inv_flat`
(shift invariant, every step weighted by the mean N-step weight).

Each saved model is scored with every sampler option: `end_back` (CrysBFN's released sampler)
and `bayes` (BFN's Bayesian-update sampler) at N = 10, single samples, and `end_back` best of 4
by minimum interatomic distance (40 calls), flow seed 0; StructureMatcher match rate (95 % Wilson
interval) and structural validity beside the random-coordinate baseline on the same rows.
Writes docs/benchmarks/crystal-tuning.{md,json}.
Run: `OMP_NUM_THREADS=1 python benchmarks/run.py crystal_tune --models <runs>/crystal-tune
[--data <folder with perov_5/>] [--save-at 2000 4000 6000] [--variants inv_elbo]` (about 5
CPU-minutes of training per 1000 steps, 2 minutes of scoring per saved model).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "elbo": {"shift_invariant": False},
    "inv_elbo": {"shift_invariant": True},
    "inv_flat": {"shift_invariant": True, "coord_weights": "flat"},
}
SAMPLERS = [("end_back", 1), ("bayes", 1), ("end_back", 4)]
BATCH = 256
TRAIN_ROWS, HELD_OUT = 3287, 500
MACHINE = "2 shared CPU cores, no GPU"


def train_variant(name: str, rows, save_at: list[int], models: Path) -> dict[int, float | None]:
    """Trains the variant with the shipped recipe through `polydiff.crystal.workflow.train` (the
    call behind `polydiff crystal train`) in `models/<name>/train`, resuming there, and exports
    the EMA weights to `models/<name>-<steps>` at every step count of ``save_at``; returns the
    training seconds spent in this run to reach each (None for models found)."""
    from polydiff.crystal.workflow import TrainRecipe, train

    seconds, start = {}, time.perf_counter()
    options = {"hidden": 128, "layers": 3, "n_freq": 32, **VARIANTS[name]}
    for steps in sorted(save_at):
        folder = models / f"{name}-{steps}"
        if (folder / "config.json").is_file():
            seconds[steps] = None
            continue
        recipe = TrainRecipe(steps, BATCH, checkpoint_every=500, seed=0, ema_warmup=False)
        train(
            rows[:TRAIN_ROWS],
            models / name / "train",
            options=options,
            recipe=recipe,
            export_to=folder,
            progress_bar=False,
            accelerator="cpu",
            devices=1,
        )
        seconds[steps] = time.perf_counter() - start
        print(f"{name}: exported at step {steps}, {seconds[steps]:.0f} s", flush=True)
    return seconds


def weights_digest(folder: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a model's weights."""
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:16]


def previous_rows(out: Path) -> dict[tuple, list[dict]]:
    """The previous crystal-tuning.json's rows by (variant, steps, weights)."""
    path = out / "crystal-tuning.json"
    found: dict[tuple, list[dict]] = {}
    for r in json.loads(path.read_text())["rows"] if path.is_file() else []:
        r = {"scored_by": r.get("scored_by"), **r}
        found.setdefault((r["variant"], r["training_steps"], r.get("weights")), []).append(r)
    return found


def score_model(folder: Path, held) -> list[dict]:
    from polydiff.crystal.metrics import csp_match, structural_validity
    from polydiff.crystal.workflow import load_model

    model = load_model(str(folder))
    rows = []
    for sampler, k in SAMPLERS:
        predicted = model.predict(
            held, generator=torch.Generator().manual_seed(0), sampler=sampler, candidates=k
        )
        score = csp_match(predicted, held)
        valid = structural_validity(predicted)
        rows.append(
            {
                "sampler": sampler,
                "candidates": k,
                "network_calls_per_structure": k * model.config.steps,
                "match_rate": score.match_rate,
                "match_rate_ci95": list(score.match_rate_ci),
                "rmse": score.rmse,
                "structural_validity": sum(valid) / len(valid),
            }
        )
        print(folder.name, json.dumps(rows[-1]), flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = [
        "# CrysBFN tuning on validation data (perov-5 `val`)",
        "",
        f"Command: `{result['command']}` ({result['machine']}; 1 torch thread; Python "
        f"{result['python']}).",
        "",
        f"Models trained on perov-5 `val.csv` rows [0, {TRAIN_ROWS}) with the shipped "
        f"`crysbfn-perov5` recipe (batch {BATCH}, AdamW 1e-3, EMA 0.995 without warm-up, "
        "through `polydiff.crystal.workflow.train`) and scored on the held-out "
        f"rows [{TRAIN_ROWS}, {TRAIN_ROWS + HELD_OUT}): this is the tuning split; the test "
        "split is not read here (docs/benchmarks/crystal.md reports on it). N = 10, flow seed "
        "0, one structure per composition, or the best of 4 by minimum interatomic distance "
        "(4 x 10 calls). StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3); 95 % Wilson "
        "intervals. Models found under `--models` are reused, not retrained; with `--reuse`, "
        "the rows of a model whose weights an earlier run scored are taken from it.",
        "",
        f"Random fractional coordinates in the true lattices: match rate "
        f"{100 * result['random_coordinates']:.1f} % on the same rows.",
        "",
        "| loss | training steps | epochs | sampler | candidates | calls "
        "| match rate % (95 % CI) | RMSE | structural validity % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lo, hi = r["match_rate_ci95"]
        epochs = r["training_steps"] * BATCH / TRAIN_ROWS
        lines.append(
            f"| {r['variant']} | {r['training_steps']} | {epochs:.0f} "
            f"| {r['sampler']} | {r['candidates']} "
            f"| {r['network_calls_per_structure']} | {100 * r['match_rate']:.1f} "
            f"({100 * lo:.1f}–{100 * hi:.1f}) | {r['rmse']:.3f} "
            f"| {100 * r['structural_validity']:.1f} |"
        )
    runs = sorted({r["scored_by"] for r in result["rows"]} - {result["command"], None})
    reused = [f"Rows reused from the run of `{run}` (same weights)." for run in runs]
    return "\n".join([*lines, "", *reused, *([""] if reused else [])])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py crystal_tune", description=__doc__)
    default = ROOT.parent / "shared" / "data" / "crystal"
    parser.add_argument("--data", type=Path, default=default, help="folder with perov_5/")
    parser.add_argument("--models", type=Path, required=True, help="where models are kept")
    parser.add_argument("--save-at", type=int, nargs="+", default=[1000])
    parser.add_argument("--variants", nargs="+", default=["inv_elbo"], choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the previous rows of a model's same weights"
    )
    args = parser.parse_args(argv)
    from polydiff.core.io import atomic_write_json, atomic_write_text, nan_to_none
    from polydiff.crystal.data import read_csv
    from polydiff.crystal.metrics import csp_match, random_coordinates

    torch.set_num_threads(1)
    rows = read_csv(args.data / "perov_5" / "val.csv")
    held = rows[TRAIN_ROWS : TRAIN_ROWS + HELD_OUT]
    command = "python benchmarks/run.py crystal_tune " + " ".join(
        "<runs>/crystal-tune" if a == str(args.models) else "<path>" if Path(a).is_absolute() else a
        for a in argv
    )
    table, old = [], previous_rows(args.out) if args.reuse else {}
    for name in args.variants:
        seconds = train_variant(name, rows, args.save_at, args.models)
        for steps in args.save_at:
            folder = args.models / f"{name}-{steps}"
            weights = weights_digest(folder)
            scored = old.get((name, steps, weights)) or [
                {**r, "training_seconds": seconds.get(steps), "scored_by": command}
                for r in score_model(folder, held)
            ]
            table += [{"variant": name, "training_steps": steps, "weights": weights, **r}
                      for r in scored]  # fmt: skip
    base = csp_match(random_coordinates(held, torch.Generator().manual_seed(0)), held)
    result = {
        "command": command,
        "machine": MACHINE,
        "python": platform.python_version(),
        "split": {
            "train": f"perov_5/val.csv[:{TRAIN_ROWS}]",
            "tuning": f"perov_5/val.csv[{TRAIN_ROWS}:{TRAIN_ROWS + HELD_OUT}]",
        },
        "random_coordinates": base.match_rate,
        "rows": table,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "crystal-tuning.json", nan_to_none(result))
    atomic_write_text(args.out / "crystal-tuning.md", markdown(result))
    return 0
